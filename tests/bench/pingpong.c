/* The floor of a round trip on this machine: two processes sharing one page ping-pong a counter.
 *
 *   pingpong [ROUNDTRIPS=20000] [REPS=15]
 *
 * Modes, each the median over REPS batches of ROUNDTRIPS round trips (µs per round trip):
 *   spin        both sides busy-wait on the shared word (the floor when each side has a core)
 *   futex       both sides sleep in FUTEX_WAIT at once and wake the other with FUTEX_WAKE (every round trip
 *               two sleeps and two wake-ups: the floor of a doorbell when nobody spins)
 *   spin+futex  spin up to 50 µs, then FUTEX_WAIT (what the unix ring transport does)
 *   socket      a one-byte write and a blocking read on a unix socketpair each way (the ring's old doorbell)
 * Prints one line per mode: pingpong<TAB>MODE<TAB>us<TAB>MEDIAN<TAB>n=..,min=..,max=..
 * Not a test: it measures, it never fails on a number. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    _Atomic uint32_t seq;      /* odd: the child's turn; even: the parent's */
    _Atomic uint32_t sleeping; /* bit 0: parent sleeps, bit 1: child sleeps */
} Shared;

enum { SPIN, FUTEX, SPIN_FUTEX, SOCKET };
static const char *NAMES[] = { "spin", "futex", "spin+futex", "socket" };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t v) { syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0); }
static void futex_wake(_Atomic uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0); }

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waits until seq == want. spin_ns: how long to busy-wait first (-1: forever, 0: sleep at once). */
static void wait_turn(Shared *s, uint32_t want, long spin_ns)
{
    if (atomic_load(&s->seq) == want) return;
    if (spin_ns != 0) {
        double end = spin_ns < 0 ? 1e300 : now_s() + spin_ns * 1e-9;
        for (int i = 0;; i++) {
            if (atomic_load(&s->seq) == want) return;
            cpu_relax();
            if ((i & 63) == 0 && now_s() > end) break;
        }
    }
    for (;;) {
        uint32_t v = atomic_load(&s->seq);
        if (v == want) return;
        futex_wait(&s->seq, v); /* returns at once if seq moved since the load */
    }
}

static void pass_turn(Shared *s, int mode)
{
    atomic_fetch_add(&s->seq, 1);
    if (mode != SPIN) futex_wake(&s->seq);
}

static int run(int mode, int roundtrips, int reps, double *out)
{
    Shared *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) { perror("mmap"); return 0; }
    int sv[2];
    if (mode == SOCKET && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) { perror("socketpair"); return 0; }
    long spin = mode == SPIN ? -1 : mode == SPIN_FUTEX ? 50000 : 0;
    int total = roundtrips * (reps + 1);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 0; }
    if (pid == 0) {
        char b = 0;
        for (int i = 0; i < total; i++) {
            if (mode == SOCKET) {
                if (read(sv[1], &b, 1) != 1 || write(sv[1], &b, 1) != 1) _exit(1);
            } else {
                wait_turn(s, 2u * (uint32_t)i + 1, spin);
                pass_turn(s, mode);
            }
        }
        _exit(0);
    }
    char b = 0;
    int k = 0;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now_s();
        for (int i = 0; i < roundtrips; i++, k++) {
            if (mode == SOCKET) {
                if (write(sv[0], &b, 1) != 1 || read(sv[0], &b, 1) != 1) { fprintf(stderr, "socket ping-pong failed\n"); return 0; }
            } else {
                pass_turn(s, mode);
                wait_turn(s, 2u * (uint32_t)k + 2, spin);
            }
        }
        double t1 = now_s();
        if (r > 0) out[r - 1] = (t1 - t0) * 1e6 / roundtrips; /* the first batch warms up */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    munmap(s, 4096);
    if (mode == SOCKET) { close(sv[0]); close(sv[1]); }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int roundtrips = argc > 1 ? atoi(argv[1]) : 20000, reps = argc > 2 ? atoi(argv[2]) : 15;
    if (roundtrips <= 0 || reps <= 0) { fprintf(stderr, "usage: pingpong [ROUNDTRIPS] [REPS]\n"); return 2; }
    double *v = calloc((size_t)reps, sizeof *v);
    for (int mode = SPIN; mode <= SOCKET; mode++) {
        /* Spinning on a machine with one core would measure the scheduler's time slice, not a round trip. */
        int n = mode == SPIN && sysconf(_SC_NPROCESSORS_ONLN) < 2 ? 0 : roundtrips;
        if (n == 0) { printf("pingpong\t%s\tus\tn/a\tone CPU\n", NAMES[mode]); continue; }
        if (mode == SPIN) n = n / 10 > 0 ? n / 10 : 1; /* spinning is slow when the other side is descheduled */
        if (!run(mode, n, reps, v)) { printf("pingpong\t%s\tus\tn/a\tfailed\n", NAMES[mode]); continue; }
        qsort(v, (size_t)reps, sizeof *v, cmp);
        double med = reps % 2 ? v[reps / 2] : (v[reps / 2 - 1] + v[reps / 2]) / 2;
        printf("pingpong\t%s\tus\t%.3f\tn=%d,min=%.3f,max=%.3f\n", NAMES[mode], med, reps, v[0], v[reps - 1]);
        fflush(stdout);
    }
    free(v);
    return 0;
}
