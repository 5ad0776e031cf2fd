/*
 * Tensors for the plugin test host: logits (fp32 or fp16 bits), the op's attributes, the outputs
 * (labels, and confidence levels where asked for) and their comparison with the host reference
 * (reweightArgmaxReference.h).
 */
#pragma once

#include "reweightArgmaxReference.h"
#include "testSupport.h"

#include <cstdint>
#include <random>
#include <string>
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
    int32_t confidence{0};

    //! Elements per output row: labels, or int32 words of four labels.
    int32_t outputWidth() const
    {
        return pack4 != 0 ? (outWidth + 3) / 4 : outWidth;
    }
};

//! What the plugin wrote, as int32 elements (one value each, or four uint8 values with pack4).
struct Outputs
{
    std::vector<uint32_t> labels;
    std::vector<uint32_t> confidence; //!< empty without the attribute confidence
};

//! Values 0..255 per pixel as the output stores them: int32 elements, or four per element (pack4).
inline std::vector<uint32_t> outputElements(std::vector<uint8_t> const& values, Attributes const& a, int rows)
{
    if (a.pack4 != 0)
    {
        return dannet::packLabels4(values, rows, a.outWidth);
    }
    return std::vector<uint32_t>(values.begin(), values.end());
}

//! The inverse of outputElements: the value of each pixel (an int32 element's whole value).
inline std::vector<int> pixelValues(std::vector<uint32_t> const& elements, Attributes const& a, int rows)
{
    std::vector<int> values(static_cast<size_t>(rows) * a.outWidth);
    for (size_t i = 0; i < values.size(); ++i)
    {
        size_t const row = i / a.outWidth;
        size_t const x = i % a.outWidth;
        values[i] = a.pack4 != 0
            ? static_cast<int>((elements[row * a.outputWidth() + x / 4] >> (8 * (x % 4))) & 0xFFu)
            : static_cast<int>(elements[i]);
    }
    return values;
}

//! Empty when ``got`` is what the host reference gives for these logits: labels bit for bit and,
//! with the attribute confidence, confidence levels as close as the op spec demands
//! (testSupport::compareLevels), pack4's padding bytes included; else the problem.
inline std::string compareWithReference(
    Outputs const& got, Attributes const& a, Shape const& shape, Logits const& logits)
{
    dannet::ReweightArgmaxParams const params = dannet::makeParams(shape.batch, shape.channels, shape.height,
        shape.width, a.outHeight, a.outWidth, a.weights.data(), a.alignCorners != 0, a.mode);
    dannet::ReweightArgmaxOutputs const expected
        = dannet::reweightArgmaxConfidenceReference(logits.values.data(), params);
    int const rows = shape.batch * a.outHeight;
    if (got.labels != outputElements(expected.labels, a, rows))
    {
        return "labels differ from the host reference";
    }
    if (a.confidence == 0)
    {
        return got.confidence.empty() ? "" : "a confidence output without the attribute";
    }
    if (got.confidence.size() != got.labels.size())
    {
        return "the confidence has " + std::to_string(got.confidence.size()) + " elements, the labels "
            + std::to_string(got.labels.size());
    }
    std::vector<int> const levels = pixelValues(got.confidence, a, rows);
    std::vector<uint8_t> const bytes(levels.begin(), levels.end());
    if (outputElements(bytes, a, rows) != got.confidence)
    {
        return "confidence elements hold more than one level 0..255 each (or pack4 padding that is not 0)";
    }
    return testSupport::compareLevels(levels, expected.confidence);
}

} // namespace host
