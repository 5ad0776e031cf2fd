// ctest (CPU): the ReweightArgmax kernels and their launcher, compiled unchanged against the CPU
// emulation of CUDA (cudaEmulation/: one thread at a time in reverse order, bounds-checked loads,
// uniform barriers enforced, sanitizers on the stores), against the host reference: labels bit for
// bit, from the labels-only and from the confidence kernels, and confidence levels within one level
// (testSupport::compareLevels); each launch on the stream it is given and no synchronisation (the
// emulation's record of the launches). Every shape runs both modes, both align_corners (but the largest),
// fp32 and fp16 logits and the three label formats. fp16 expectations come from the tests' own half
// decoder (testSupport.h).
// --stop-at-first-failure (for the mutation test) exits at the first failure.
#include "reweightArgmaxReference.h"
#include "testSupport.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace
{
using testSupport::check;
using testSupport::DeviceBuffer;

//! float -> fp16 bits, rounding to nearest (ties away from zero: any rounding makes valid inputs).
uint16_t encodeHalf(float value)
{
    uint16_t const sign = std::signbit(value) ? 0x8000 : 0;
    float const a = std::fabs(value);
    if (a >= 65520.0f)
    {
        return sign | 0x7C00; // rounds to infinity
    }
    if (a < std::ldexp(1.0f, -14))
    {
        return sign | static_cast<uint16_t>(std::lround(std::ldexp(a, 24))); // subnormal (1024: the least normal)
    }
    int exponent = 0;
    float const fraction = std::frexp(a, &exponent); // a = fraction * 2^exponent, fraction in [0.5, 1)
    long const mantissa = std::lround(std::ldexp(fraction, 11)) - 1024;
    // mantissa 1024 (rounded up to the next power of two) carries into the exponent, as it should
    return sign | static_cast<uint16_t>(((exponent + 14) << 10) + mantissa);
}

struct Shape
{
    char const* name;
    int batch;
    int channels;
    int inHeight;
    int inWidth;
    int outHeight;
    int outWidth;
    //! When > 0: class 1 is raised by 2 above the others and followed by ``copies`` exact copies of
    //! it (exact ties: the lowest class must win) and one copy nudged by at most 1 ulp per logit
    //! (near ties: the rounding of every operation decides), all with class 1's weight.
    int copies;
    //! Only align_corners = 1, as DANNet runs (for the shapes with many blocks, to save time).
    bool alignCornersOnly;
    //! Of the logits (1e-5: most are fp16 subnormals).
    float scale = 1.0f;
};

//! The logits as fp32, as fp16 bits, and the fp16 bits decoded (what the kernel must compute with).
struct Inputs
{
    std::vector<float> logits;
    std::vector<uint16_t> halves;
    std::vector<float> decoded;
    std::vector<float> weights;
};

//! Logits normal(0, 3) * scale with a few tiny (fp16 subnormal) and a few huge (fp16 infinity)
//! values, in the tie structure of ``Shape::copies``; weights uniform(0.7, 1.3).
Inputs makeInputs(Shape const& s, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    std::uniform_int_distribution<int> nudge(-1, 1);
    size_t const plane = static_cast<size_t>(s.inHeight) * s.inWidth;
    Inputs in;
    in.logits.resize(static_cast<size_t>(s.batch) * s.channels * plane);
    for (auto& v : in.logits)
    {
        float const u = uniform(rng);
        v = s.scale * (u < 0.02f ? normal(rng) * 1e-5f : u > 0.995f ? normal(rng) * 3e4f : normal(rng));
    }
    in.weights.resize(static_cast<size_t>(s.channels));
    for (auto& w : in.weights)
    {
        w = 0.7f + 0.6f * uniform(rng);
    }
    in.halves.resize(in.logits.size());
    for (size_t i = 0; i < in.logits.size(); ++i)
    {
        in.halves[i] = encodeHalf(in.logits[i]);
    }
    int const nearCopy = s.copies + 2;
    for (int n = 0; n < s.batch && s.copies > 0; ++n)
    {
        size_t const first = (static_cast<size_t>(n) * s.channels + 1) * plane;
        for (size_t i = first; i < first + plane; ++i)
        {
            in.logits[i] += 2.0f * s.scale;
            in.halves[i] = encodeHalf(in.logits[i]);
            for (int c = 2; c <= nearCopy; ++c)
            {
                in.logits[i + (c - 1) * plane] = in.logits[i];
                in.halves[i + (c - 1) * plane] = in.halves[i];
            }
            int const step = nudge(rng);
            size_t const j = i + (nearCopy - 1) * plane;
            in.logits[j] = step == 0 ? in.logits[i]
                                     : std::nextafter(in.logits[i], step * std::numeric_limits<float>::infinity());
            bool const finiteNonZero = (in.halves[i] & 0x7FFF) != 0 && (in.halves[i] & 0x7FFF) < 0x7BFF;
            in.halves[j] = static_cast<uint16_t>(in.halves[i] + (finiteNonZero ? step : 0)); // 1 fp16 ulp
        }
    }
    for (int c = 2; c <= nearCopy && s.copies > 0; ++c)
    {
        in.weights[static_cast<size_t>(c)] = in.weights[1];
    }
    in.decoded.resize(in.halves.size());
    for (size_t i = 0; i < in.halves.size(); ++i)
    {
        in.decoded[i] = testSupport::decodeHalf(in.halves[i]);
    }
    return in;
}

//! The per-pixel values (labels or confidence levels) of an output read back from the device
//! (``raw``) in ``format``, N x outH x outW; empty, with ``problem`` set, where the layout itself is
//! wrong (pack4 padding bytes that are not zero).
std::vector<int> decodeOutput(
    std::vector<uint8_t> const& raw, dannet::LabelFormat format, Shape const& s, std::string& problem)
{
    size_t const rows = static_cast<size_t>(s.batch) * s.outHeight;
    size_t const packedWidth = static_cast<size_t>(s.outWidth + 3) / 4 * 4;
    std::vector<int> values(rows * s.outWidth);
    for (size_t row = 0; row < rows; ++row)
    {
        for (size_t x = 0; x < static_cast<size_t>(s.outWidth); ++x)
        {
            size_t const i = row * s.outWidth + x;
            int32_t value = raw[i];
            if (format == dannet::kLabelsInt32)
            {
                std::memcpy(&value, raw.data() + i * 4, 4);
            }
            else if (format == dannet::kLabelsPacked4)
            {
                value = raw[row * packedWidth + x];
            }
            values[i] = value;
        }
        for (size_t x = s.outWidth; format == dannet::kLabelsPacked4 && x < packedWidth; ++x)
        {
            if (raw[row * packedWidth + x] != 0)
            {
                problem = "pack4 padding byte of row " + std::to_string(row) + " is not zero";
                return {};
            }
        }
    }
    return values;
}

//! Empty when the labels read back from the device (``raw``) are ``expected``; else the first difference.
std::string compareLabels(std::vector<uint8_t> const& raw, std::vector<uint8_t> const& expected,
    dannet::LabelFormat format, Shape const& s)
{
    std::string problem;
    std::vector<int> const labels = decodeOutput(raw, format, s, problem);
    for (size_t i = 0; problem.empty() && i < expected.size(); ++i)
    {
        if (labels[i] != expected[i])
        {
            size_t const row = i / s.outWidth;
            problem = "pixel (n " + std::to_string(row / s.outHeight) + ", y " + std::to_string(row % s.outHeight)
                + ", x " + std::to_string(i % s.outWidth) + "): " + std::to_string(labels[i]) + " instead of "
                + std::to_string(expected[i]);
        }
    }
    return problem;
}

//! Empty when the confidence levels read back from the device (``raw``) agree with ``expected``
//! within what the op spec allows; else the problem.
std::string compareConfidence(std::vector<uint8_t> const& raw, std::vector<uint8_t> const& expected,
    dannet::LabelFormat format, Shape const& s)
{
    std::string problem;
    std::vector<int> const levels = decodeOutput(raw, format, s, problem);
    return problem.empty() ? testSupport::compareLevels(levels, expected) : problem;
}

//! Runs the launcher under test on ``stream``: "" when it launched successfully, on ``stream`` only
//! and without waiting for the stream or the device (the emulation's record of this thread says so:
//! a real GPU would run such a launch all the same, after other work or serialising with it, so
//! only the record shows it); else what went wrong.
std::string launch(cudaStream_t stream, void const* input, bool fp16, void* labels, void* confidence,
    dannet::LabelFormat format, dannet::ReweightArgmaxParams const& p)
{
    cudaEmulation::StreamRecord const before = cudaEmulation::streamRecord();
    int const status = dannet::launchReweightArgmax(input, fp16, labels, confidence, format, p, stream);
    cudaEmulation::StreamRecord const& after = cudaEmulation::streamRecord();
    if (status != cudaSuccess)
    {
        return "launch failed: " + std::string(cudaGetErrorName(static_cast<cudaError_t>(status)));
    }
    std::vector<cudaStream_t> const launches(after.launches.begin() + before.launches.size(), after.launches.end());
    if (launches != std::vector<cudaStream_t>{stream})
    {
        return "the launcher made " + std::to_string(launches.size())
            + " launch(es), not one launch on the stream it was given";
    }
    if (after.streamSynchronizations != before.streamSynchronizations
        || after.deviceSynchronizations != before.deviceSynchronizations)
    {
        return "the launcher synchronised (it must only launch)";
    }
    return "";
}

void runShape(Shape const& s, unsigned seed, cudaStream_t stream)
{
    Inputs const in = makeInputs(s, seed);
    size_t const pixels = static_cast<size_t>(s.batch) * s.outHeight * s.outWidth;
    size_t const words = static_cast<size_t>(s.batch) * s.outHeight * ((s.outWidth + 3) / 4);
    DeviceBuffer<float> const floats(in.logits);
    DeviceBuffer<uint16_t> const halves(in.halves);
    for (int fp16 = 0; fp16 < 2; ++fp16)
    {
        void const* const input = fp16 ? static_cast<void const*>(halves.data()) : floats.data();
        for (int mode = 0; mode < 2; ++mode)
        {
            for (int alignCorners = s.alignCornersOnly ? 1 : 0; alignCorners < 2; ++alignCorners)
            {
                dannet::ReweightArgmaxParams const p = dannet::makeParams(s.batch, s.channels, s.inHeight,
                    s.inWidth, s.outHeight, s.outWidth, in.weights.data(), alignCorners == 1, mode);
                dannet::ReweightArgmaxOutputs const expected
                    = dannet::reweightArgmaxConfidenceReference(fp16 ? in.decoded.data() : in.logits.data(), p);
                for (int format = 0; format < 3; ++format)
                {
                    auto const labelFormat = static_cast<dannet::LabelFormat>(format);
                    size_t const bytes = format == dannet::kLabelsInt32 ? pixels * 4
                        : format == dannet::kLabelsPacked4             ? words * 4
                                                                       : pixels;
                    std::string const what = std::string(s.name) + " " + std::to_string(s.batch) + "x"
                        + std::to_string(s.channels) + "x" + std::to_string(s.inHeight) + "x"
                        + std::to_string(s.inWidth) + " -> " + std::to_string(s.outHeight) + "x"
                        + std::to_string(s.outWidth) + " mode " + std::to_string(mode) + " align_corners "
                        + std::to_string(alignCorners) + (fp16 ? " fp16" : " fp32") + " format "
                        + std::to_string(format);
                    {
                        DeviceBuffer<uint8_t> const labels(bytes);
                        std::string mismatch
                            = launch(stream, input, fp16 == 1, labels.data(), nullptr, labelFormat, p);
                        if (mismatch.empty())
                        {
                            mismatch = compareLabels(labels.download(), expected.labels, labelFormat, s);
                        }
                        check(mismatch.empty(), what + " labels only: " + mismatch);
                    }
                    DeviceBuffer<uint8_t> const labels(bytes);
                    DeviceBuffer<uint8_t> const confidence(bytes);
                    std::string mismatch
                        = launch(stream, input, fp16 == 1, labels.data(), confidence.data(), labelFormat, p);
                    if (mismatch.empty())
                    {
                        mismatch = compareLabels(labels.download(), expected.labels, labelFormat, s);
                    }
                    check(mismatch.empty(), what + " labels with confidence: " + mismatch);
                    if (mismatch.empty())
                    {
                        mismatch = compareConfidence(confidence.download(), expected.confidence, labelFormat, s);
                        check(mismatch.empty(), what + " confidence: " + mismatch);
                    }
                }
            }
        }
    }
}

__global__ void doNothing(int /*unused*/) {}

//! Launch-configuration errors come back as CUDA reports them, and the kernel refuses > 64 classes.
void checkErrors()
{
    int value = 0;
    void* args[] = {&value};
    check(cudaLaunchKernel(doNothing, dim3(1), dim3(1025), args) == cudaErrorInvalidConfiguration,
        "a block of 1025 threads is refused");
    check(cudaLaunchKernel(doNothing, dim3(1, 0), dim3(32), args) == cudaErrorInvalidConfiguration,
        "an empty grid is refused");
    check(cudaGetLastError() == cudaErrorInvalidConfiguration && cudaGetLastError() == cudaSuccess,
        "cudaGetLastError reports the launch error once");

    float const weights[dannet::kMaxClasses + 1] = {};
    dannet::ReweightArgmaxParams p{};
    check(!dannet::makeReweightArgmaxParams(1, dannet::kMaxClasses + 1, 2, 2, 4, 4, weights, true, 0, p),
        "65 classes are refused");
    check(dannet::makeReweightArgmaxParams(1, dannet::kMaxClasses, 2, 2, 4, 4, weights, true, 0, p),
        "64 classes are accepted");
    for (bool const withConfidence : {false, true})
    {
        void* const confidence = withConfidence ? &value : nullptr; // never written: the launch fails
        std::string const kernels = withConfidence ? " (confidence kernels)" : " (labels-only kernels)";
        p.batch = 0;
        check(dannet::launchReweightArgmax(nullptr, false, nullptr, confidence, dannet::kLabelsInt32, p, nullptr)
                == cudaErrorInvalidConfiguration,
            "the launcher reports an empty grid" + kernels);
        cudaGetLastError();
        p.batch = 1;
        check(dannet::launchReweightArgmax(
                  nullptr, false, nullptr, confidence, static_cast<dannet::LabelFormat>(3), p, nullptr)
                == cudaErrorInvalidValue,
            "the launcher refuses an unknown label format" + kernels);
    }
}
} // namespace

int main(int argc, char** argv)
{
    testSupport::checkCounter().stopAtFirstFailure = argc > 1 && std::strcmp(argv[1], "--stop-at-first-failure") == 0;
    // One block is 128 x 8 output pixels (32 x 8 threads of 4 pixels each).
    Shape const shapes[] = {
        {"exact and near ties, ragged blocks, batch 2", 2, 6, 9, 13, 37, 50, 3, false},
        {"1 x N output", 1, 4, 3, 17, 1, 301, 1, false},
        {"N x 1 output", 1, 4, 11, 3, 70, 1, 1, false},
        {"identity scale", 1, 7, 16, 20, 16, 20, 0, false},
        {"upscale x8", 1, 19, 5, 7, 40, 56, 1, false},
        {"upscale > 8, 2 blocks wide", 1, 6, 4, 5, 45, 133, 0, false},
        {"downscale: tile does not fit shared memory", 1, 19, 60, 300, 9, 130, 1, false},
        {"1 class", 2, 1, 6, 7, 13, 29, 0, false},
        {"tiny logits: fp16 subnormals", 1, 5, 6, 9, 23, 30, 1, false, 1e-5f},
        {"64 classes, staged and unstaged blocks", 1, 64, 10, 40, 16, 130, 2, false},
        {"DANNet 68x120 -> 1080x1920 scaled by 1/8, batch 2", 2, 19, 9, 15, 135, 240, 1, true},
    };
    checkErrors();
    cudaStream_t stream = nullptr; // not the default stream: the launches must go where they are sent
    check(cudaStreamCreate(&stream) == cudaSuccess, "cudaStreamCreate");
    unsigned seed = 1;
    for (Shape const& s : shapes)
    {
        runShape(s, seed++, stream);
    }
    cudaStreamDestroy(stream);
    int const failures = testSupport::failedChecks();
    std::printf("%s\n",
        failures == 0 ? "reweightArgmax emulated kernel: all labels bit-exact, all confidence levels within one"
                      : "FAILURES");
    return failures == 0 ? 0 : 1;
}
