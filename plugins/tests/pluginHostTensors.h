/*
 * Tensors for the plugin test host: logits (fp32 or fp16 bits), the op's attributes, and the labels
 * the host reference (reweightArgmaxReference.h) expects for them.
 */
#pragma once

#include "reweightArgmaxReference.h"
#include "testSupport.h"

#include <cstdint>
#include <random>
#include <vector>

namespace host
{

//! The logits' shape N x C x H x W.
struct Shape
{
    int batch;
    int channels;
    int height;
    int width;

    size_t count() const
    {
        return static_cast<size_t>(batch) * channels * height * width;
    }
};

//! Logits in the input's storage type, and the float values they stand for.
struct Logits
{
    bool fp16;
    std::vector<float> values;    //!< what the kernel computes with
    std::vector<uint16_t> halves; //!< the fp16 input's bits (fp16 only)
};

//! Random logits: fp32 multiples of 1/8 in [-5, 5] (many exact ties after interpolation), or fp16
//! values of magnitude about 2^-4 .. 2^2 with random fraction bits, some of them subnormal or zero.
inline Logits randomLogits(Shape const& shape, bool fp16, uint32_t seed)
{
    std::mt19937 random(seed);
    Logits logits{fp16, std::vector<float>(shape.count()), {}};
    if (!fp16)
    {
        std::uniform_int_distribution<int> eighths(-40, 40);
        for (float& v : logits.values)
        {
            v = static_cast<float>(eighths(random)) / 8.0f;
        }
        return logits;
    }
    std::uniform_int_distribution<int> exponent(11, 17);
    std::uniform_int_distribution<int> fraction(0, 0x3ff);
    std::uniform_int_distribution<int> kind(0, 15);
    logits.halves.resize(shape.count());
    for (size_t i = 0; i < shape.count(); ++i)
    {
        int const k = kind(random);
        uint16_t const sign = (k & 1) != 0 ? 0x8000 : 0;
        uint16_t const biased = k == 0 ? 0 : static_cast<uint16_t>(exponent(random)); // k == 0: subnormal or zero
        logits.halves[i] = static_cast<uint16_t>(sign | (biased << 10) | fraction(random));
        logits.values[i] = testSupport::decodeHalf(logits.halves[i]);
    }
    return logits;
}

//! The op's attributes as the host passes them to the creator.
struct Attributes
{
    std::vector<float> weights;
    int32_t outHeight;
    int32_t outWidth;
    int32_t alignCorners;
    int32_t pack4;
    int32_t mode;

    //! Elements per output row: labels, or int32 words of four labels.
    int32_t outputWidth() const
    {
        return pack4 != 0 ? (outWidth + 3) / 4 : outWidth;
    }
};

//! The output as int32 elements (labels, or four uint8 labels per element), per the host reference.
inline std::vector<uint32_t> expectedOutput(Attributes const& a, Shape const& shape, Logits const& logits)
{
    dannet::ReweightArgmaxParams const params = dannet::makeParams(shape.batch, shape.channels, shape.height,
        shape.width, a.outHeight, a.outWidth, a.weights.data(), a.alignCorners != 0, a.mode);
    std::vector<uint8_t> const labels = dannet::reweightArgmaxReference(logits.values.data(), params);
    if (a.pack4 != 0)
    {
        return dannet::packLabels4(labels, shape.batch * a.outHeight, a.outWidth);
    }
    return std::vector<uint32_t>(labels.begin(), labels.end());
}

} // namespace host
