#version 450
// No-op vertex shader for the vkCmdDraw recording metric (the pipeline discards rasterisation and is never submitted).
void main() { gl_Position = vec4(0.0, 0.0, 0.0, 1.0); }
