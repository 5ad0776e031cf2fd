// A C entry point to the host reference, so that Python tests can compare it with PyTorch and NumPy.
#include "reweightArgmaxReference.h"

#include <cstring>

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
