/*
 * Host reference of ReweightArgmax: the kernel's exact per-pixel arithmetic (shared through
 * reweightArgmaxKernel.cuh), one pixel at a time, for tests on machines without a GPU.
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

//! Labels (uint8 values 0..C-1) for fp32 logits, N x outH x outW.
inline std::vector<uint8_t> reweightArgmaxReference(float const* logits, ReweightArgmaxParams const& p)
{
    std::vector<uint8_t> labels(static_cast<size_t>(p.batch) * p.outHeight * p.outWidth);
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
                int label = 0;
                for (int c = 0; c < p.channels; ++c)
                {
                    float const* z = logits + (static_cast<size_t>(n) * p.channels + c) * plane;
                    float const v = bilinear(z[ly.i0 * p.inWidth + lx.i0], z[ly.i0 * p.inWidth + lx.i1],
                        z[ly.i1 * p.inWidth + lx.i0], z[ly.i1 * p.inWidth + lx.i1], ly, lx);
                    float const s = score(v, p.weights[c], p.additive);
                    if (s > best)
                    {
                        best = s;
                        label = c;
                    }
                }
                labels[(static_cast<size_t>(n) * p.outHeight + y) * p.outWidth + x] = static_cast<uint8_t>(label);
            }
        }
    }
    return labels;
}

//! Four labels per int32, little-endian (pixel 4k in the lowest byte): the pack4 output layout.
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
