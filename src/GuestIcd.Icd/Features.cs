using GuestIcd.Protocol;
using GuestIcd.Vulkan;
using static GuestIcd.Vulkan.VkStructureType;

namespace GuestIcd.Icd;

/// <summary>Features the host reports but does not serve to guests are not reported to the application either:
/// hostsim's gate refuses a device that enables buffer device addresses (on a CPU driver an address is a host
/// pointer), and applications that enable every feature they are told of (Zink does) would get
/// VK_ERROR_FEATURE_NOT_PRESENT from vkCreateDevice.</summary>
internal static unsafe partial class Entry
{
    public static void vkGetPhysicalDeviceFeatures2(VkPhysicalDevice physicalDevice, VkPhysicalDeviceFeatures2* pFeatures)
    {
        ulong* a = stackalloc ulong[2];
        a[0] = (ulong)physicalDevice.Handle;
        a[1] = (ulong)pFeatures;
        Generic.Call(Tables.vkGetPhysicalDeviceFeatures2, a);
        for (var n = (VkBaseOutStructure*)pFeatures; n != null; n = n->pNext)
        {
            switch (n->sType)
            {
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES:
                    var v12 = (VkPhysicalDeviceVulkan12Features*)n;
                    v12->bufferDeviceAddress = v12->bufferDeviceAddressCaptureReplay = v12->bufferDeviceAddressMultiDevice = 0;
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_BUFFER_DEVICE_ADDRESS_FEATURES:
                    var bda = (VkPhysicalDeviceBufferDeviceAddressFeatures*)n;
                    bda->bufferDeviceAddress = bda->bufferDeviceAddressCaptureReplay = bda->bufferDeviceAddressMultiDevice = 0;
                    break;
                case VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_BUFFER_DEVICE_ADDRESS_FEATURES_EXT:
                    var ext = (VkPhysicalDeviceBufferDeviceAddressFeaturesEXT*)n;
                    ext->bufferDeviceAddress = ext->bufferDeviceAddressCaptureReplay = ext->bufferDeviceAddressMultiDevice = 0;
                    break;
            }
        }
    }
}
