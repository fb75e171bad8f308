#version 450
// GPU-bound kernel for the benchmark: per element, four independent FMA chains of `iters` steps each
// (8 FLOP per step), read from src and written to dst so nothing can be optimised away. The chains
// converge towards 1.0, so the result is well defined for any iteration count.
// Also used, with iters = 1 and count = 64, as the "small dispatch" of the recording and submit metrics.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer In { float src[]; };
layout(std430, binding = 1) writeonly buffer Out { float dst[]; };
layout(push_constant) uniform Params { uint count; uint iters; } pc;
void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.count) return;
    float x = src[i];
    float a = x, b = x + 1.0, c = x + 2.0, d = x + 3.0;
    for (uint k = 0u; k < pc.iters; k++) {
        a = fma(a, 0.999, 0.001);
        b = fma(b, 0.999, 0.001);
        c = fma(c, 0.999, 0.001);
        d = fma(d, 0.999, 0.001);
    }
    dst[i] = a + b + c + d;
}
