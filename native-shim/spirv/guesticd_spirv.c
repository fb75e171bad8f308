/* libguesticd_spirv.so: SPIR-V validation for hostsim's valid-usage gate (Gate/Shaders.cs). The host
 * driver compiles whatever SPIR-V it is given and trusts it to be valid; a mutated module crashed lavapipe
 * inside vkCreateComputePipelines. SPIRV-Tools' validator (Debian ships it as a static library only) runs
 * on every module before the driver sees it. Linked statically so that hostsim needs nothing at run time. */
#include <spirv-tools/libspirv.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
  GUESTICD_SPIRV_RELAX_BLOCK_LAYOUT = 1,
  GUESTICD_SPIRV_UNIFORM_BUFFER_STANDARD_LAYOUT = 2,
  GUESTICD_SPIRV_SCALAR_BLOCK_LAYOUT = 4,
  GUESTICD_SPIRV_WORKGROUP_SCALAR_BLOCK_LAYOUT = 8,
};

/* The validator's target environments for the Vulkan versions hostsim serves (1.0 .. 1.3), and 1.1 with
 * VK_KHR_spirv_1_4; index = what the caller passes. */
static const spv_target_env envs[] = {
  SPV_ENV_VULKAN_1_0, SPV_ENV_VULKAN_1_1, SPV_ENV_VULKAN_1_2, SPV_ENV_VULKAN_1_3, SPV_ENV_VULKAN_1_1_SPIRV_1_4,
};

/* 0: valid. 1: invalid, the validator's reason in msg. -1: the validator could not run (reason in msg).
 * Each call has its own context: the validator keeps no state between modules, and sessions of an
 * in-process hostsim validate on their own threads. */
__attribute__((visibility("default")))
int guesticd_spirv_validate(const uint32_t *code, size_t words, int env, uint32_t flags, char *msg, size_t cap)
{
  if (cap) msg[0] = 0;
  if (env < 0 || env >= (int)(sizeof envs / sizeof envs[0])) {
    snprintf(msg, cap, "unknown target environment %d", env);
    return -1;
  }
  spv_context ctx = spvContextCreate(envs[env]);
  spv_validator_options opts = spvValidatorOptionsCreate();
  if (!ctx || !opts) {
    snprintf(msg, cap, "the validator could not start");
    if (ctx) spvContextDestroy(ctx);
    if (opts) spvValidatorOptionsDestroy(opts);
    return -1;
  }
  if (flags & GUESTICD_SPIRV_RELAX_BLOCK_LAYOUT) spvValidatorOptionsSetRelaxBlockLayout(opts, true);
  if (flags & GUESTICD_SPIRV_UNIFORM_BUFFER_STANDARD_LAYOUT) spvValidatorOptionsSetUniformBufferStandardLayout(opts, true);
  if (flags & GUESTICD_SPIRV_SCALAR_BLOCK_LAYOUT) spvValidatorOptionsSetScalarBlockLayout(opts, true);
  if (flags & GUESTICD_SPIRV_WORKGROUP_SCALAR_BLOCK_LAYOUT) spvValidatorOptionsSetWorkgroupScalarBlockLayout(opts, true);
  spv_const_binary_t binary = { code, words };
  spv_diagnostic diag = NULL;
  spv_result_t r = spvValidateWithOptions(ctx, opts, &binary, &diag);
  int rc = r == SPV_SUCCESS ? 0 : 1;
  if (rc && cap) {
    if (diag && diag->error) snprintf(msg, cap, "%s (word %zu)", diag->error, diag->position.index);
    else snprintf(msg, cap, "spv_result_t %d", (int)r);
  }
  spvDiagnosticDestroy(diag);
  spvValidatorOptionsDestroy(opts);
  spvContextDestroy(ctx);
  return rc;
}
