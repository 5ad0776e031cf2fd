/*
 * What the plugin library's C++ tests share: check() (prints and counts failed checks), an fp16
 * decoder written from the IEEE 754 definition (independent of the kernel's and the emulation's
 * conversions, so that the expected labels never come from the code under test), the tolerance
 * that confidence levels are compared with (compareLevels), and exactly sized device buffers
 * through whichever <cuda_runtime_api.h> the test is built with: CUDA's, or the CPU emulation's
 * (where AddressSanitizer sees any overrun of them).
 */
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace testSupport
{

struct CheckCounter
{
    int failed{0};
    bool stopAtFirstFailure{false}; //!< for the mutation test: the first failure is the verdict
};

inline CheckCounter& checkCounter()
{
    static CheckCounter counter;
    return counter;
}

//! Records and prints a failed check (the test fails if any did); exits at once if asked to.
inline void check(bool ok, std::string const& what)
{
    if (ok)
    {
        return;
    }
    ++checkCounter().failed;
    std::printf("FAILED: %s\n", what.c_str());
    std::fflush(stdout);
    if (checkCounter().stopAtFirstFailure)
    {
        std::exit(1);
    }
}

inline int failedChecks()
{
    return checkCounter().failed;
}

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
        return fraction == 0 ? sign * std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    }
    return sign * std::ldexp(static_cast<float>(0x400 | fraction), exponent - 25);
}

//! Empty when confidence levels ``got`` agree with ``expected`` as the op spec allows implementations
//! to: none more than one level apart, and few apart at all (at most one in a thousand, and at least
//! one is allowed). Implementations differ only in an exponential's last bits, which moves a level
//! only where 255 p + 0.5 lies that close to an integer; a systematic error (a rounding rule, a
//! missing rescale) moves many. Otherwise the first problem.
inline std::string compareLevels(std::vector<int> const& got, std::vector<uint8_t> const& expected)
{
    if (got.size() != expected.size())
    {
        return "the confidence has " + std::to_string(got.size()) + " pixels instead of "
            + std::to_string(expected.size());
    }
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i)
    {
        int const difference = got[i] - expected[i];
        if (difference < -1 || difference > 1)
        {
            return "confidence of pixel " + std::to_string(i) + ": level " + std::to_string(got[i]) + " instead of "
                + std::to_string(expected[i]);
        }
        differ += difference != 0 ? 1 : 0;
    }
    size_t const allowed = got.size() / 1000 > 1 ? got.size() / 1000 : 1;
    if (differ > allowed)
    {
        return std::to_string(differ) + " of " + std::to_string(got.size())
            + " confidence levels are one level off (at most " + std::to_string(allowed) + " may be)";
    }
    return "";
}

//! An exactly sized buffer in device memory, freed with the object.
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

    //! A copy of ``values`` on the device.
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

} // namespace testSupport
