// ivshmem-rw: reads or writes the shared memory of the guest's ivshmem-plain device (PCI 1af4:1110)
// through the mmap of its BAR2, /sys/bus/pci/devices/<bdf>/resource2. The sysfs resource files of
// memory BARs only support mmap, so dd cannot do this. Built on the host (cc -O2 -o ivshmem-rw
// ivshmem-rw.c) and run in the guest, which sees the host's filesystem.
//
//   ivshmem-rw [-f RESOURCE_FILE] size              prints the size of the region
//   ivshmem-rw [-f RESOURCE_FILE] read OFFSET LEN   writes LEN bytes from OFFSET to stdout
//   ivshmem-rw [-f RESOURCE_FILE] write OFFSET TEXT copies TEXT's bytes to OFFSET
//   ivshmem-rw find                                 prints the resource file of the first device
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_hex(const char *path, unsigned *out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%x", out) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

static int find_device(char *out, size_t n) {
    const char *base = "/sys/bus/pci/devices";
    DIR *d = opendir(base);
    if (!d) return -1;
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d)) != NULL && found != 0) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        unsigned vendor = 0, device = 0;
        snprintf(p, sizeof p, "%s/%s/vendor", base, e->d_name);
        if (read_hex(p, &vendor) != 0) continue;
        snprintf(p, sizeof p, "%s/%s/device", base, e->d_name);
        if (read_hex(p, &device) != 0) continue;
        if (vendor == 0x1af4 && device == 0x1110) {
            snprintf(out, n, "%s/%s/resource2", base, e->d_name);
            found = 0;
        }
    }
    closedir(d);
    return found;
}

static void usage(void) {
    fprintf(stderr, "usage: ivshmem-rw [-f RESOURCE_FILE] size | read OFFSET LEN | write OFFSET TEXT | find\n");
    exit(2);
}

int main(int argc, char **argv) {
    char path[512] = "";
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "-f") == 0) {
        snprintf(path, sizeof path, "%s", argv[i + 1]);
        i += 2;
    }
    if (i >= argc) usage();
    const char *op = argv[i++];
    if (!path[0] && find_device(path, sizeof path) != 0) {
        fprintf(stderr, "ivshmem-rw: no ivshmem device (PCI 1af4:1110) in /sys/bus/pci/devices\n");
        return 1;
    }
    if (strcmp(op, "find") == 0) { puts(path); return 0; }

    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0) { fprintf(stderr, "ivshmem-rw: open %s: %s\n", path, strerror(errno)); return 1; }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) { fprintf(stderr, "ivshmem-rw: cannot size %s\n", path); return 1; }
    size_t size = (size_t)st.st_size;
    if (strcmp(op, "size") == 0) { printf("%zu\n", size); return 0; }

    unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED) { fprintf(stderr, "ivshmem-rw: mmap %s: %s\n", path, strerror(errno)); return 1; }
    if (strcmp(op, "read") == 0 && i + 2 == argc) {
        size_t off = strtoull(argv[i], NULL, 0), len = strtoull(argv[i + 1], NULL, 0);
        if (off > size || len > size - off) { fprintf(stderr, "ivshmem-rw: range outside the %zu bytes\n", size); return 1; }
        fwrite(mem + off, 1, len, stdout);
    } else if (strcmp(op, "write") == 0 && i + 2 == argc) {
        size_t off = strtoull(argv[i], NULL, 0), len = strlen(argv[i + 1]);
        if (off > size || len > size - off) { fprintf(stderr, "ivshmem-rw: range outside the %zu bytes\n", size); return 1; }
        memcpy(mem + off, argv[i + 1], len);
        __sync_synchronize();
    } else {
        usage();
    }
    munmap(mem, size);
    close(fd);
    return 0;
}
