/*
 * The kernel's parameter block, built on the host: one definition for the TensorRT plugin and the
 * host reference, so that both hand the kernel the same scales and the same log weights.
 * Host-only, no exceptions (the plugin's methods are noexcept).
 */
#pragma once

#include "reweightArgmaxKernel.cuh"

#include <cmath>
#include <cstdint>

namespace dannet
{

//! One size limit of the kernel: what it bounds, the largest value allowed, and why.
struct SizeLimit
{
    char const* quantity;
    int64_t largest;
    char const* reason;
};

// The shapes the kernel handles. Its index arithmetic is 32-bit (the fast path: offsets into one
// image's logits, output columns), its grid is ceil(outW / 128) x ceil(outH / 8) x N blocks, and its
// source coordinates are fp32 (PyTorch's formula). Beyond these limits it would overflow an int,
// exceed CUDA's grid (launch error), or read past a row of the logits: the plugin refuses such
// attributes and shapes before they reach the kernel (createPlugin, configurePlugin, onShapeChange),
// and makeReweightArgmaxParams refuses them for every other caller.
//! Grid z is the batch: CUDA allows 65535.
inline constexpr SizeLimit kBatchLimit{"batch N", 65535, "CUDA's grid z extent"};
//! c * h * w + row * w + column indexes an image's logits in int.
inline constexpr SizeLimit kImageLimit{
    "logits per image C x h x w", INT32_MAX, "32-bit offsets into an image's logits"};
//! h and w of the logits: the fp32 source coordinate of the last output pixel carries a relative
//! error of at most about 6 * 2^-24 (the roundings of sourceScale and sourceIndex), 0.375 for an extent
//! of 2^20, less than the half pixel that keeps its neighbour index inside the row for every output
//! size. From about 2^22 on it does not (e.g. w = 4247913 -> 1084942781 without align_corners gives
//! the last pixel the column 4247913, one past the row).
inline constexpr SizeLimit kInputExtentLimit{
    "logits height h and width w", int64_t{1} << 20, "fp32 source coordinates"};
//! Grid y: 65535 blocks of kBlockY rows.
inline constexpr SizeLimit kOutHeightLimit{
    "out_height", int64_t{65535} * kBlockY, "CUDA's grid y extent of 65535 blocks"};
//! The grid's last block of kBlockX * kPixelsPerThread columns ends at ceil(outW / 128) * 128 in int.
inline constexpr SizeLimit kOutWidthLimit{
    "out_width", INT32_MAX - (kBlockX * kPixelsPerThread - 1), "32-bit column arithmetic"};

//! The first limit that an output of ``outHeight`` x ``outWidth`` (both positive) exceeds; nullptr if none.
inline SizeLimit const* exceededOutputLimit(int64_t outHeight, int64_t outWidth) noexcept
{
    if (outHeight > kOutHeightLimit.largest)
    {
        return &kOutHeightLimit;
    }
    return outWidth > kOutWidthLimit.largest ? &kOutWidthLimit : nullptr;
}

//! The first limit that logits of ``batch`` x ``channels`` x ``inHeight`` x ``inWidth`` (all positive,
//! of any size: TensorRT's extents are 64-bit) exceed; nullptr if none.
inline SizeLimit const* exceededInputLimit(int64_t batch, int64_t channels, int64_t inHeight, int64_t inWidth) noexcept
{
    if (batch > kBatchLimit.largest)
    {
        return &kBatchLimit;
    }
    if (inHeight > kInputExtentLimit.largest || inWidth > kInputExtentLimit.largest)
    {
        return &kInputExtentLimit;
    }
    // h * w <= 2^40 here; divided rather than multiplied by the channels, which may be any int64
    return channels > kImageLimit.largest / (inHeight * inWidth) ? &kImageLimit : nullptr;
}

//! Mode 1's weight: float32(log(double(w))), the one definition in every language (the NumPy twin's
//! runtime.reweight_argmax.log_weights is the same expression). The log in double, rounded once to
//! float, is the correctly rounded float log for all but astronomically rare w, whereas logf and
//! NumPy's float32 log may be 1 ulp off (and differ from each other): where two classes tie after
//! re-weighting, that ulp decides the label.
inline float logWeight(float w) noexcept
{
    return static_cast<float>(std::log(static_cast<double>(w)));
}

//! Parameters for logits N x C x inH x inW and labels N x outH x outW; mode 0 multiplies the
//! logits by the weights, mode 1 the probabilities (as z + log w, needs w > 0). False, leaving
//! ``params`` unspecified, when a size is not positive or exceeds a size limit above, C > kMaxClasses,
//! mode is not 0/1, or a mode 1 weight is not positive.
inline bool makeReweightArgmaxParams(int batch, int channels, int inHeight, int inWidth, int outHeight, int outWidth,
    float const* weights, bool alignCorners, int mode, ReweightArgmaxParams& params) noexcept
{
    if (batch < 1 || channels < 1 || channels > kMaxClasses || inHeight < 1 || inWidth < 1 || outHeight < 1
        || outWidth < 1 || weights == nullptr || (mode != 0 && mode != 1)
        || exceededInputLimit(batch, channels, inHeight, inWidth) != nullptr
        || exceededOutputLimit(outHeight, outWidth) != nullptr)
    {
        return false;
    }
    params = ReweightArgmaxParams{};
    params.batch = batch;
    params.channels = channels;
    params.inHeight = inHeight;
    params.inWidth = inWidth;
    params.outHeight = outHeight;
    params.outWidth = outWidth;
    params.alignCorners = alignCorners ? 1 : 0;
    params.scaleY = sourceScale(inHeight, outHeight, params.alignCorners);
    params.scaleX = sourceScale(inWidth, outWidth, params.alignCorners);
    params.additive = mode;
    for (int c = 0; c < channels; ++c)
    {
        if (mode == 1 && !(weights[c] > 0.0f))
        {
            return false;
        }
        params.weights[c] = mode == 1 ? logWeight(weights[c]) : weights[c];
    }
    return true;
}

} // namespace dannet
