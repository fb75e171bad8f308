#version 450
// dst[i] = src[i] * mul + i: every element depends on its input, its index and the push constant.
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer In { uint src[]; };
layout(std430, binding = 1) writeonly buffer Out { uint dst[]; };
layout(push_constant) uniform Params { uint mul; uint count; } pc;
void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i < pc.count) dst[i] = src[i] * pc.mul + i;
}
