// ctest: the host reference against an independent double-precision bilinear formula, the cases
// whose answer is known by hand (ties, 1x1 inputs, identity size, pack4 byte order), what
// makeReweightArgmaxParams refuses, and one definition of the kernel header's host helpers across
// translation units.
#include "reweightArgmaxReference.h"
#include "reweightArgmaxReferenceTestOtherUnit.h"
#include "testSupport.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace
{
using testSupport::check;

//! Textbook bilinear interpolation in double, written independently of the kernel's helpers.
double sampleDouble(std::vector<float> const& plane, int h, int w, double sy, double sx)
{
    int const y0 = static_cast<int>(std::floor(sy));
    int const x0 = static_cast<int>(std::floor(sx));
    int const y1 = std::min(y0 + 1, h - 1);
    int const x1 = std::min(x0 + 1, w - 1);
    double const fy = sy - y0;
    double const fx = sx - x0;
    auto at = [&](int y, int x) { return static_cast<double>(plane[static_cast<size_t>(y) * w + x]); };
    return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
}

double sourceDouble(int in, int out, int dst, bool alignCorners)
{
    if (alignCorners)
    {
        return out > 1 ? dst * static_cast<double>(in - 1) / (out - 1) : 0.0;
    }
    return std::max(0.0, (dst + 0.5) * in / out - 0.5);
}

void randomCase(int c, int h, int w, int oh, int ow, bool alignCorners, int mode, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::uniform_real_distribution<float> uniform(0.7f, 1.3f);
    std::vector<float> logits(static_cast<size_t>(c) * h * w);
    std::vector<float> weights(c);
    for (auto& v : logits)
    {
        v = normal(rng);
    }
    for (auto& v : weights)
    {
        v = uniform(rng);
    }
    auto const p = dannet::makeParams(1, c, h, w, oh, ow, weights.data(), alignCorners, mode);
    auto const labels = dannet::reweightArgmaxReference(logits.data(), p);
    int mismatches = 0;
    for (int y = 0; y < oh; ++y)
    {
        for (int x = 0; x < ow; ++x)
        {
            double best = -1e300;
            double second = -1e300;
            int label = 0;
            for (int k = 0; k < c; ++k)
            {
                std::vector<float> plane(logits.begin() + static_cast<long>(k) * h * w,
                    logits.begin() + static_cast<long>(k + 1) * h * w);
                double const v = sampleDouble(plane, h, w, sourceDouble(h, oh, y, alignCorners),
                    sourceDouble(w, ow, x, alignCorners));
                double const s = mode == 1 ? v + std::log(static_cast<double>(weights[k])) : v * weights[k];
                if (s > best)
                {
                    second = best;
                    best = s;
                    label = k;
                }
                else if (s > second)
                {
                    second = s;
                }
            }
            // fp32 and fp64 may disagree only where two classes are within rounding of each other
            if (labels[static_cast<size_t>(y) * ow + x] != label && best - second > 1e-4)
            {
                ++mismatches;
            }
        }
    }
    check(mismatches == 0, "host reference agrees with the double-precision formula");
}
} // namespace

int main()
{
    HostHelpers const elsewhere = hostHelpersOfAnotherUnit();
    check(elsewhere.mulRn == &dannet::mulRn && elsewhere.sourceScale == &dannet::sourceScale
            && elsewhere.lerpAt == &dannet::lerpAt && elsewhere.bilinear == &dannet::bilinear,
        "the kernel header's host helpers are one definition program-wide (inline, not static)");
    for (int mode = 0; mode < 2; ++mode)
    {
        for (int ac = 0; ac < 2; ++ac)
        {
            randomCase(19, 9, 13, 37, 50, ac == 1, mode, 1u + mode * 2 + ac);  // non-integer upscaling
            randomCase(19, 17, 23, 5, 7, ac == 1, mode, 11u + mode * 2 + ac);  // output smaller than input
            randomCase(5, 1, 1, 3, 4, ac == 1, mode, 21u + mode * 2 + ac);     // 1x1 input
            randomCase(7, 8, 8, 8, 8, ac == 1, mode, 31u + mode * 2 + ac);     // same size
        }
    }
    // exact ties: equal logits everywhere -> class 0; a tie between classes 2 and 3 -> 2
    {
        std::vector<float> logits(4 * 2 * 2, 1.0f);
        float const ones[4] = {1, 1, 1, 1};
        auto labels = dannet::reweightArgmaxReference(logits.data(), dannet::makeParams(1, 4, 2, 2, 3, 3, ones, true, 0));
        check(labels == std::vector<uint8_t>(9, 0), "all-equal scores give class 0");
        for (int i = 0; i < 4; ++i)
        {
            logits[2 * 4 + i] = 5.0f;
            logits[3 * 4 + i] = 5.0f;
        }
        labels = dannet::reweightArgmaxReference(logits.data(), dannet::makeParams(1, 4, 2, 2, 3, 3, ones, false, 0));
        check(labels == std::vector<uint8_t>(9, 2), "a tie goes to the lower class");
    }
    // weights decide: class 1 has the lower logit but 3x the weight
    {
        std::vector<float> logits = {2.0f, 1.0f};
        float const weights[2] = {1.0f, 3.0f};
        auto labels = dannet::reweightArgmaxReference(logits.data(), dannet::makeParams(1, 2, 1, 1, 2, 2, weights, true, 0));
        check(labels == std::vector<uint8_t>(4, 1), "mode 0 multiplies logits by the weights");
    }
    // pack4: pixel 4k is the lowest byte
    {
        std::vector<uint8_t> labels = {1, 2, 3, 4, 5};
        auto packed = dannet::packLabels4(labels, 1, 5);
        check(packed.size() == 2 && packed[0] == 0x04030201u && packed[1] == 0x5u, "pack4 byte order");
    }
    bool threw = false;
    try
    {
        float const w[1] = {0.0f};
        dannet::makeParams(1, 1, 1, 1, 1, 1, w, true, 1);
    }
    catch (std::invalid_argument const&)
    {
        threw = true;
    }
    check(threw, "mode 1 refuses non-positive weights");
    // the noexcept parameter builder the plugin uses: false for what the kernel cannot run
    {
        float weights[dannet::kMaxClasses + 1];
        std::fill(weights, weights + dannet::kMaxClasses + 1, 1.0f);
        dannet::ReweightArgmaxParams p{};
        check(dannet::makeReweightArgmaxParams(2, dannet::kMaxClasses, 3, 4, 5, 6, weights, true, 1, p)
                && p.channels == dannet::kMaxClasses && p.additive == 1 && p.weights[0] == 0.0f,
            "64 classes in mode 1 give log weights");
        check(!dannet::makeReweightArgmaxParams(1, dannet::kMaxClasses + 1, 3, 4, 5, 6, weights, true, 0, p),
            "65 classes are refused");
        check(!dannet::makeReweightArgmaxParams(0, 3, 3, 4, 5, 6, weights, true, 0, p), "batch 0 is refused");
        check(!dannet::makeReweightArgmaxParams(1, 3, 3, 4, 5, 0, weights, true, 0, p), "width 0 is refused");
        check(!dannet::makeReweightArgmaxParams(1, 3, 3, 4, 5, 6, weights, true, 2, p), "mode 2 is refused");
        weights[1] = std::nanf("");
        check(!dannet::makeReweightArgmaxParams(1, 3, 3, 4, 5, 6, weights, true, 1, p), "mode 1 refuses a NaN weight");
        weights[1] = -1.0f;
        check(dannet::makeReweightArgmaxParams(1, 3, 3, 4, 5, 6, weights, true, 0, p) && p.weights[1] == -1.0f,
            "mode 0 takes any weight as it is");
    }
    int const failures = testSupport::failedChecks();
    std::printf("%s\n", failures == 0 ? "reweightArgmax host reference: all checks passed" : "FAILURES");
    return failures == 0 ? 0 : 1;
}
