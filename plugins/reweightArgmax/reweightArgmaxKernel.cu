// Host launcher of the ReweightArgmax kernels (the kernels themselves live in the .cuh for NVRTC).
#include "reweightArgmaxKernel.cuh"

#include <cuda_runtime_api.h>

namespace dannet
{

int launchReweightArgmax(void const* logits, bool fp16, void* labels, LabelFormat format,
    ReweightArgmaxParams const& params, CUstream_st* stream)
{
    dim3 const block(kBlockX, kBlockY);
    dim3 const grid((params.outWidth + kBlockX * kPixelsPerThread - 1) / (kBlockX * kPixelsPerThread),
        (params.outHeight + kBlockY - 1) / kBlockY, params.batch);
    auto const* f32 = static_cast<float const*>(logits);
    auto const* f16 = static_cast<unsigned short const*>(logits);
    switch (format)
    {
    case kLabelsInt32:
        fp16 ? reweightArgmaxF16I32<<<grid, block, 0, stream>>>(f16, labels, params)
             : reweightArgmaxF32I32<<<grid, block, 0, stream>>>(f32, labels, params);
        break;
    case kLabelsPacked4:
        fp16 ? reweightArgmaxF16Packed4<<<grid, block, 0, stream>>>(f16, labels, params)
             : reweightArgmaxF32Packed4<<<grid, block, 0, stream>>>(f32, labels, params);
        break;
    case kLabelsUint8:
        fp16 ? reweightArgmaxF16U8<<<grid, block, 0, stream>>>(f16, labels, params)
             : reweightArgmaxF32U8<<<grid, block, 0, stream>>>(f32, labels, params);
        break;
    default: return static_cast<int>(cudaErrorInvalidValue);
    }
    return static_cast<int>(cudaGetLastError());
}

} // namespace dannet
