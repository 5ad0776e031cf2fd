/*
 * Host reference of ReweightArgmax: the kernel's exact per-pixel arithmetic (shared through
 * reweightArgmaxKernel.cuh), one pixel at a time, for tests on machines without a GPU. Labels are
 * bit-identical to the kernel's; confidence levels are within one level (the exponential is the
 * host C library's here, CUDA's expf on the device).
 */
#pragma once

#include "reweightArgmaxKernel.cuh"
#include "reweightArgmaxParams.h"

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace dannet
{

//! makeReweightArgmaxParams (reweightArgmaxParams.h), throwing std::invalid_argument where it fails.
inline ReweightArgmaxParams makeParams(int batch, int channels, int inHeight, int inWidth, int outHeight,
    int outWidth, float const* weights, bool alignCorners, int mode)
{
    ReweightArgmaxParams p{};
    if (!makeReweightArgmaxParams(
            batch, channels, inHeight, inWidth, outHeight, outWidth, weights, alignCorners, mode, p))
    {
        throw std::invalid_argument("ReweightArgmax: sizes must be positive, channels <= 64, mode 0 or 1, "
                                    "and mode 1 needs positive weights");
    }
    return p;
}

//! Labels (uint8 values 0..C-1) and confidence levels (0..255), each N x outH x outW.
struct ReweightArgmaxOutputs
{
    std::vector<uint8_t> labels;
    std::vector<uint8_t> confidence;
};

//! Labels and confidence levels for fp32 logits, computed as the confidence kernels compute them.
inline ReweightArgmaxOutputs reweightArgmaxConfidenceReference(float const* logits, ReweightArgmaxParams const& p)
{
    size_t const pixels = static_cast<size_t>(p.batch) * p.outHeight * p.outWidth;
    ReweightArgmaxOutputs out{std::vector<uint8_t>(pixels), std::vector<uint8_t>(pixels)};
    size_t const plane = static_cast<size_t>(p.inHeight) * p.inWidth;
    for (int n = 0; n < p.batch; ++n)
    {
        for (int y = 0; y < p.outHeight; ++y)
        {
            Lerp const ly = lerpAt(p.scaleY, y, p.inHeight, p.alignCorners);
            for (int x = 0; x < p.outWidth; ++x)
            {
                Lerp const lx = lerpAt(p.scaleX, x, p.inWidth, p.alignCorners);
                float best = -3.402823466e38f;
                float sum = 0.0f;
                int label = 0;
                for (int c = 0; c < p.channels; ++c)
                {
                    float const* z = logits + (static_cast<size_t>(n) * p.channels + c) * plane;
                    float const v = bilinear(z[ly.i0 * p.inWidth + lx.i0], z[ly.i0 * p.inWidth + lx.i1],
                        z[ly.i1 * p.inWidth + lx.i0], z[ly.i1 * p.inWidth + lx.i1], ly, lx);
                    float const s = score(v, p.weights[c], p.additive);
                    sum = softmaxDenominator(sum, best, s);
                    if (s > best)
                    {
                        best = s;
                        label = c;
                    }
                }
                size_t const i = (static_cast<size_t>(n) * p.outHeight + y) * p.outWidth + x;
                out.labels[i] = static_cast<uint8_t>(label);
                out.confidence[i] = static_cast<uint8_t>(confidenceLevel(sum));
            }
        }
    }
    return out;
}

//! Labels (uint8 values 0..C-1) for fp32 logits, N x outH x outW.
inline std::vector<uint8_t> reweightArgmaxReference(float const* logits, ReweightArgmaxParams const& p)
{
    return reweightArgmaxConfidenceReference(logits, p).labels;
}

//! Four labels (or confidence levels) per int32, little-endian (pixel 4k in the lowest byte): the pack4 layout.
inline std::vector<uint32_t> packLabels4(std::vector<uint8_t> const& labels, int rows, int width)
{
    int const packed = (width + 3) / 4;
    std::vector<uint32_t> out(static_cast<size_t>(rows) * packed, 0u);
    for (int r = 0; r < rows; ++r)
    {
        for (int x = 0; x < width; ++x)
        {
            out[static_cast<size_t>(r) * packed + x / 4] |= static_cast<uint32_t>(labels[static_cast<size_t>(r) * width + x])
                << (8 * (x % 4));
        }
    }
    return out;
}

} // namespace dannet
