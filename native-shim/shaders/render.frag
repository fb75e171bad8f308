#version 450
// The render client's fragment shader: the vertex colour modulated by the texture, mixed in by a push
// constant (1 for the textured quad, 0 for the flat-coloured triangles).
layout(set = 0, binding = 0) uniform sampler2D tex;
layout(push_constant) uniform Params { float texMix; } pc;
layout(location = 0) in vec2 inUv;
layout(location = 1) in vec4 inColor;
layout(location = 0) out vec4 outColor;
void main()
{
    vec4 t = texture(tex, inUv);
    outColor = inColor * mix(vec4(1.0), t, pc.texMix);
}
