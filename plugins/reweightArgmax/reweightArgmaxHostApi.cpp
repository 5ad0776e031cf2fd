// C entry points to the host reference, so that Python tests can compare it with PyTorch and NumPy.
#include "reweightArgmaxReference.h"

#include <cstdint>
#include <cstring>

//! Labels (uint8, N x outH x outW) of fp32 logits; 0, or 1 for arguments makeParams refuses.
extern "C" int dannetReweightArgmaxHost(float const* logits, int batch, int channels, int inHeight, int inWidth,
    int outHeight, int outWidth, float const* weights, int alignCorners, int mode, unsigned char* labels)
{
    try
    {
        dannet::ReweightArgmaxParams const p = dannet::makeParams(
            batch, channels, inHeight, inWidth, outHeight, outWidth, weights, alignCorners != 0, mode);
        std::vector<uint8_t> const out = dannet::reweightArgmaxReference(logits, p);
        std::memcpy(labels, out.data(), out.size());
        return 0;
    }
    catch (std::exception const&)
    {
        return 1;
    }
}

//! Labels and confidence levels (uint8 each, N x outH x outW) of fp32 logits; 0, or 1 for arguments
//! makeParams refuses.
extern "C" int dannetReweightArgmaxHostConfidence(float const* logits, int batch, int channels, int inHeight,
    int inWidth, int outHeight, int outWidth, float const* weights, int alignCorners, int mode, unsigned char* labels,
    unsigned char* confidence)
{
    try
    {
        dannet::ReweightArgmaxParams const p = dannet::makeParams(
            batch, channels, inHeight, inWidth, outHeight, outWidth, weights, alignCorners != 0, mode);
        dannet::ReweightArgmaxOutputs const out = dannet::reweightArgmaxConfidenceReference(logits, p);
        std::memcpy(labels, out.labels.data(), out.labels.size());
        std::memcpy(confidence, out.confidence.data(), out.confidence.size());
        return 0;
    }
    catch (std::exception const&)
    {
        return 1;
    }
}

//! dannet::logWeight of each of ``count`` weights: mode 1's log weights as the kernel receives them.
extern "C" void dannetReweightArgmaxLogWeights(float const* weights, int count, float* logWeights)
{
    for (int i = 0; i < count; ++i)
    {
        logWeights[i] = dannet::logWeight(weights[i]);
    }
}

//! The kernel's size limits (reweightArgmaxParams.h), in the order batch, logits per image, logits height and
//! width, out_height, out_width: for the Python launcher's copy to be checked against.
extern "C" void dannetReweightArgmaxSizeLimits(int64_t* largest)
{
    dannet::SizeLimit const limits[] = {dannet::kBatchLimit, dannet::kImageLimit, dannet::kInputExtentLimit,
        dannet::kOutHeightLimit, dannet::kOutWidthLimit};
    for (int i = 0; i < 5; ++i)
    {
        largest[i] = limits[i].largest;
    }
}
