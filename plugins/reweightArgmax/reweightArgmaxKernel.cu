// Host launcher of the ReweightArgmax kernels (the kernels themselves live in the .cuh for NVRTC).
// Launches through cudaLaunchKernel rather than <<<>>>, so that the tests' CPU emulation of CUDA
// compiles this file unchanged with a host compiler.
#include "reweightArgmaxKernel.cuh"

#include <cuda_runtime_api.h>

namespace dannet
{
namespace
{
using ReweightArgmaxKernel = void (*)(void const*, void*, ReweightArgmaxParams);
using ReweightArgmaxConfidenceKernel = void (*)(void const*, void*, void*, ReweightArgmaxParams);

//! [fp16][label format]
constexpr ReweightArgmaxKernel kKernels[2][3] = {
    {reweightArgmaxF32I32, reweightArgmaxF32Packed4, reweightArgmaxF32U8},
    {reweightArgmaxF16I32, reweightArgmaxF16Packed4, reweightArgmaxF16U8},
};
constexpr ReweightArgmaxConfidenceKernel kConfidenceKernels[2][3] = {
    {reweightArgmaxConfidenceF32I32, reweightArgmaxConfidenceF32Packed4, reweightArgmaxConfidenceF32U8},
    {reweightArgmaxConfidenceF16I32, reweightArgmaxConfidenceF16Packed4, reweightArgmaxConfidenceF16U8},
};
} // namespace

int launchReweightArgmax(void const* logits, bool fp16, void* labels, void* confidence, LabelFormat format,
    ReweightArgmaxParams const& params, CUstream_st* stream)
{
    if (format != kLabelsInt32 && format != kLabelsPacked4 && format != kLabelsUint8)
    {
        return static_cast<int>(cudaErrorInvalidValue);
    }
    dim3 const block(kBlockX, kBlockY);
    dim3 const grid((params.outWidth + kBlockX * kPixelsPerThread - 1) / (kBlockX * kPixelsPerThread),
        (params.outHeight + kBlockY - 1) / kBlockY, params.batch);
    // cudaLaunchKernel takes the address of each argument and copies the arguments before it
    // returns; it never writes through these pointers.
    void* const paramsArg = const_cast<ReweightArgmaxParams*>(&params);
    if (confidence == nullptr)
    {
        void* args[] = {&logits, &labels, paramsArg};
        return static_cast<int>(cudaLaunchKernel(kKernels[fp16 ? 1 : 0][format], grid, block, args, 0, stream));
    }
    void* args[] = {&logits, &labels, &confidence, paramsArg};
    return static_cast<int>(
        cudaLaunchKernel(kConfidenceKernels[fp16 ? 1 : 0][format], grid, block, args, 0, stream));
}

} // namespace dannet
