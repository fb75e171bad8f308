#version 450
// The render client's vertex shader: clip-space position with depth, texture coordinates and a
// per-vertex colour (fetched from an R8G8B8A8_UNORM attribute, so its alpha carries the blend weight).
layout(location = 0) in vec3 inPosition;
layout(location = 1) in vec2 inUv;
layout(location = 2) in vec4 inColor;
layout(location = 0) out vec2 outUv;
layout(location = 1) out vec4 outColor;
void main()
{
    gl_Position = vec4(inPosition, 1.0);
    outUv = inUv;
    outColor = inColor;
}
