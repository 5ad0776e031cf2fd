/*
 * The kernel's parameter block, built on the host: one definition for the TensorRT plugin and the
 * host reference, so that both hand the kernel the same scales and the same log weights.
 * Host-only, no exceptions (the plugin's methods are noexcept).
 */
#pragma once

#include "reweightArgmaxKernel.cuh"

#include <cmath>

namespace dannet
{

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
//! ``params`` unspecified, when a size is not positive, C > kMaxClasses, mode is not 0/1, or a
//! mode 1 weight is not positive.
inline bool makeReweightArgmaxParams(int batch, int channels, int inHeight, int inWidth, int outHeight, int outWidth,
    float const* weights, bool alignCorners, int mode, ReweightArgmaxParams& params) noexcept
{
    if (batch < 1 || channels < 1 || channels > kMaxClasses || inHeight < 1 || inWidth < 1 || outHeight < 1
        || outWidth < 1 || weights == nullptr || (mode != 0 && mode != 1))
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
