// ctest (GPU): the kernel, every input type and label format, against the host reference, with exact
// and near ties among the classes: labels bit for bit (labels-only and confidence kernels), confidence
// levels within one level (testSupport::compareLevels: CUDA's expf is not the host's).
// Launches on a non-blocking stream, as TensorRT enqueues the plugin, and reads results only after
// synchronising that stream. Exits 77 (skipped) on a machine without a usable GPU.
#include "reweightArgmaxReference.h"
#include "testSupport.h"

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{
using testSupport::check;
using testSupport::DeviceBuffer;

//! A stream that does not synchronise with the legacy default stream, so that a result read before
//! synchronising it (or a launch that ignored it) would show.
class Stream
{
public:
    Stream()
    {
        if (cudaStreamCreateWithFlags(&mStream, cudaStreamNonBlocking) != cudaSuccess)
        {
            throw std::runtime_error("cudaStreamCreateWithFlags failed");
        }
    }

    ~Stream()
    {
        cudaStreamDestroy(mStream);
    }

    Stream(Stream const&) = delete;
    Stream& operator=(Stream const&) = delete;

    cudaStream_t get() const
    {
        return mStream;
    }

    bool synchronize() const
    {
        return cudaStreamSynchronize(mStream) == cudaSuccess;
    }

private:
    cudaStream_t mStream{nullptr};
};

//! With 4 classes or more: class 1 leads by 2, class 2 is an exact copy of it (an exact tie: class 1
//! must win) and class 3 a copy nudged by at most 1 ulp per logit, fp32 and fp16 alike, with class
//! 1's weight (near ties: the rounding of every operation decides, so that a fused multiply-add in
//! the device code changes labels).
void addNearTies(std::vector<float>& logits, std::vector<__half>& halves, std::vector<float>& weights, int n, int c,
    size_t plane, std::mt19937& rng)
{
    if (c < 4)
    {
        return;
    }
    std::uniform_int_distribution<int> nudge(-1, 1);
    for (int image = 0; image < n; ++image)
    {
        size_t const first = (static_cast<size_t>(image) * c + 1) * plane;
        for (size_t i = first; i < first + plane; ++i)
        {
            logits[i] += 2.0f;
            halves[i] = __float2half(logits[i]);
            int const step = nudge(rng);
            logits[i + plane] = logits[i];
            logits[i + 2 * plane] = step == 0 ? logits[i] : std::nextafter(logits[i], step * INFINITY);
            uint16_t bits = 0;
            std::memcpy(&bits, &halves[i], sizeof(bits));
            bits = static_cast<uint16_t>(bits + ((bits & 0x7FFF) != 0 && (bits & 0x7FFF) < 0x7BFF ? step : 0));
            halves[i + plane] = halves[i];
            std::memcpy(&halves[i + 2 * plane], &bits, sizeof(bits));
        }
    }
    weights[2] = weights[1];
    weights[3] = weights[1];
}

void runCase(int n, int c, int h, int w, int oh, int ow, bool alignCorners, int mode, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::uniform_real_distribution<float> uniform(0.7f, 1.3f);
    std::vector<float> logits(static_cast<size_t>(n) * c * h * w);
    std::vector<float> weights(c);
    for (auto& v : logits)
    {
        v = normal(rng);
    }
    for (auto& v : weights)
    {
        v = uniform(rng);
    }
    std::vector<__half> halves(logits.size());
    for (size_t i = 0; i < logits.size(); ++i)
    {
        halves[i] = __float2half(logits[i]);
    }
    addNearTies(logits, halves, weights, n, c, static_cast<size_t>(h) * w, rng);
    auto const p = dannet::makeParams(n, c, h, w, oh, ow, weights.data(), alignCorners, mode);
    std::vector<float> rounded(logits.size());
    for (size_t i = 0; i < logits.size(); ++i)
    {
        rounded[i] = __half2float(halves[i]);
    }
    DeviceBuffer<__half> const deviceHalves(halves);
    DeviceBuffer<float> const deviceFloats(logits);
    Stream const stream;
    for (int fp16 = 0; fp16 < 2; ++fp16)
    {
        dannet::ReweightArgmaxOutputs const expected
            = dannet::reweightArgmaxConfidenceReference(fp16 ? rounded.data() : logits.data(), p);
        void const* const input = fp16 ? static_cast<void const*>(deviceHalves.data()) : deviceFloats.data();
        size_t const pixels = expected.labels.size();
        size_t const packed = static_cast<size_t>(n) * oh * ((ow + 3) / 4);
        for (int format = 0; format < 3; ++format)
        {
            size_t const bytes = format == dannet::kLabelsInt32 ? pixels * 4 : format == dannet::kLabelsPacked4 ? packed * 4 : pixels;
            // the value of each pixel in an output of this format
            auto const decode = [&](std::vector<uint8_t> const& raw) {
                std::vector<int> values(pixels);
                for (size_t i = 0; i < pixels; ++i)
                {
                    if (format == dannet::kLabelsInt32)
                    {
                        int32_t value = 0;
                        std::memcpy(&value, raw.data() + i * 4, 4);
                        values[i] = value;
                    }
                    else if (format == dannet::kLabelsPacked4)
                    {
                        values[i] = raw[(i / ow) * ((ow + 3) / 4) * 4 + i % ow];
                    }
                    else
                    {
                        values[i] = raw[i];
                    }
                }
                return values;
            };
            std::vector<int> const expectedLabels(expected.labels.begin(), expected.labels.end());
            char what[128];
            std::snprintf(what, sizeof(what), "%dx%dx%dx%d -> %dx%d align %d mode %d fp16 %d format %d", n, c, h, w, oh,
                ow, alignCorners, mode, fp16, format);
            DeviceBuffer<uint8_t> const labelsOnly(bytes);
            int status = dannet::launchReweightArgmax(input, fp16 == 1, labelsOnly.data(), nullptr,
                static_cast<dannet::LabelFormat>(format), p, stream.get());
            status = status == 0 && stream.synchronize() ? 0 : 1;
            check(status == 0 && decode(labelsOnly.download()) == expectedLabels, std::string(what) + " labels only");
            DeviceBuffer<uint8_t> const labels(bytes);
            DeviceBuffer<uint8_t> const confidence(bytes);
            status = dannet::launchReweightArgmax(input, fp16 == 1, labels.data(), confidence.data(),
                static_cast<dannet::LabelFormat>(format), p, stream.get());
            status = status == 0 && stream.synchronize() ? 0 : 1;
            check(status == 0 && decode(labels.download()) == expectedLabels,
                std::string(what) + " labels with confidence");
            std::string const levels
                = status == 0 ? testSupport::compareLevels(decode(confidence.download()), expected.confidence) : "";
            check(levels.empty(), std::string(what) + " confidence: " + levels);
        }
    }
}
} // namespace

int main()
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        std::printf("no CUDA device: skipped\n");
        return 77;
    }
    unsigned seed = 1;
    for (int mode = 0; mode < 2; ++mode)
    {
        for (int ac = 0; ac < 2; ++ac)
        {
            runCase(2, 19, 68, 120, 1080, 1920, ac == 1, mode, seed++); // the DANNet case
            runCase(1, 19, 9, 13, 37, 50, ac == 1, mode, seed++);       // non-integer scale, ragged width
            runCase(1, 19, 130, 250, 40, 61, ac == 1, mode, seed++);    // downscaling: tile too big for smem
            runCase(3, 5, 1, 1, 3, 4, ac == 1, mode, seed++);           // 1x1 input
        }
    }
    int const failures = testSupport::failedChecks();
    std::printf("%s\n",
        failures == 0 ? "reweightArgmax kernel: all labels bit-exact, all confidence levels within one" : "FAILURES");
    return failures == 0 ? 0 : 1;
}
