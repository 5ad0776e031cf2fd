/*
 * Tensors for the plugin test host: logits (fp32 or fp16 bits), "device" buffers (the CUDA
 * emulation's cudaMalloc/cudaMemcpy, exactly sized so that AddressSanitizer sees any overrun), and
 * the labels the host reference (reweightArgmaxReference.h) expects for them.
 */
#pragma once

#include "reweightArgmaxReference.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
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

//! IEEE binary16 -> float, from the definition (sign, 5-bit exponent biased by 15, 10-bit fraction).
inline float decodeHalf(uint16_t bits)
{
    int const exponent = (bits >> 10) & 0x1f;
    int const fraction = bits & 0x3ff;
    float const sign = (bits & 0x8000) != 0 ? -1.0f : 1.0f;
    if (exponent == 0)
    {
        return sign * std::ldexp(static_cast<float>(fraction), -24); // subnormal: fraction * 2^-14 / 2^10
    }
    if (exponent == 0x1f)
    {
        return fraction == 0 ? sign * INFINITY : NAN;
    }
    return sign * std::ldexp(static_cast<float>(0x400 | fraction), exponent - 25);
}

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
        logits.values[i] = decodeHalf(logits.halves[i]);
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

//! An exactly sized buffer in the (emulated) device memory.
template <typename T>
class DeviceBuffer
{
public:
    explicit DeviceBuffer(size_t count)
        : mCount(count)
    {
        void* memory = nullptr;
        if (cudaMalloc(&memory, count * sizeof(T)) != cudaSuccess)
        {
            throw std::runtime_error("cudaMalloc of " + std::to_string(count * sizeof(T)) + " bytes failed");
        }
        mData = static_cast<T*>(memory);
    }

    explicit DeviceBuffer(std::vector<T> const& values)
        : DeviceBuffer(values.size())
    {
        if (cudaMemcpy(mData, values.data(), mCount * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
        {
            throw std::runtime_error("cudaMemcpy to the device failed");
        }
    }

    ~DeviceBuffer()
    {
        cudaFree(mData);
    }

    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;

    T* data() const
    {
        return mData;
    }

    std::vector<T> download() const
    {
        std::vector<T> values(mCount);
        if (cudaMemcpy(values.data(), mData, mCount * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
        {
            throw std::runtime_error("cudaMemcpy from the device failed");
        }
        return values;
    }

private:
    size_t mCount;
    T* mData{nullptr};
};

} // namespace host
