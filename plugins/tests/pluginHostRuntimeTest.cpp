/*
 * The plugin configured, run and copied as TensorRT's builder and execution contexts do it:
 * configurePlugin with -1 then concrete dimensions, onShapeChange with the shapes A, B, A and
 * enqueue of its real kernel (executed by the CPU emulation of CUDA) against the host reference
 * (labels bit for bit, confidence levels within one), with one output and with two (the attribute
 * confidence); clone and attachToContext independent of the destroyed original and of each other;
 * getFieldsToSerialize -> createPlugin(kRUNTIME) with identical outputs; every enqueue on the stream
 * it is given, without synchronising (pluginHostDriver.cpp); logits beyond the kernel's size limits
 * refused by configurePlugin and onShapeChange; a failed launch's CUDA error named. Run by
 * pluginHostMain.cpp.
 */
#include "pluginHostDriver.h"

using namespace nvinfer1;

namespace host
{
namespace
{

//! The build phase as TensorRT goes through it, then the context: shapes A, B, A, labels checked.
void configureAndEnqueue(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    struct Case
    {
        bool fp16;
        Attributes attributes;
    };
    std::vector<Case> const cases = {
        {false, dannetAttributes(20, 61, 1, 0, 0)},
        {true, dannetAttributes(20, 61, 0, 0, 1)},
        {false, dannetAttributes(12, 130, 1, 1, 1)},
        {true, dannetAttributes(12, 130, 0, 1, 0)},
        {false, dannetAttributes(20, 61, 1, 0, 0, 1)},
        {true, dannetAttributes(20, 61, 0, 0, 1, 1)},
        {false, dannetAttributes(12, 130, 1, 1, 1, 1)},
        {true, dannetAttributes(12, 130, 0, 1, 0, 1)},
    };
    uint32_t seed = 1;
    for (Case const& c : cases)
    {
        Attributes const& a = c.attributes;
        DataType const type = c.fp16 ? DataType::kHALF : DataType::kFLOAT;
        PluginPtr const plugin = create(build.creator(), a, TensorRTPhase::kBUILD);
        Capabilities const caps = plugin != nullptr ? capabilitiesOf(*plugin) : Capabilities{};
        if (caps.build == nullptr || caps.runtime == nullptr)
        {
            check(false, "createPlugin with build and runtime capabilities");
            continue;
        }
        // building: dynamic batch and size, then the shapes of an optimisation profile
        DynamicPluginTensorDesc const dynamicIn = buildTensor(
            dims({-1, 19, -1, -1}), type, dims({1, 19, 1, 1}), dims({4, 19, 64, 200}), dims({2, 19, 9, 17}));
        int64_t const h = a.outHeight;
        int64_t const w = a.outputWidth();
        int32_t const outputs = a.confidence != 0 ? 2 : 1; // labels, confidence: the same shape
        std::vector<DynamicPluginTensorDesc> const dynamicOut(outputs,
            buildTensor(dims({-1, h, w}), DataType::kINT32, dims({1, h, w}), dims({4, h, w}), dims({2, h, w})));
        check(caps.build->configurePlugin(&dynamicIn, 1, dynamicOut.data(), outputs) == 0,
            "configurePlugin with -1 dimensions");
        DynamicPluginTensorDesc const concreteIn = buildTensor(dims({2, 19, 9, 17}), type);
        std::vector<DynamicPluginTensorDesc> const concreteOut(outputs, buildTensor(dims({2, h, w}), DataType::kINT32));
        check(caps.build->configurePlugin(&concreteIn, 1, concreteOut.data(), outputs) == 0,
            "configurePlugin with concrete dimensions");
        DynamicPluginTensorDesc const wrongChannels = buildTensor(dims({-1, 7, -1, -1}), type);
        int32_t status = 0;
        std::vector<std::string> const errors
            = errorsOf([&] { status = caps.build->configurePlugin(&wrongChannels, 1, concreteOut.data(), outputs); });
        check(status != 0 && anyContains(errors, "'weights'"), "configurePlugin refuses 7 channels with an error");
        DynamicPluginTensorDesc const threeD = buildTensor(dims({-1, 19, -1}), type);
        check(!errorsOf([&] { status = caps.build->configurePlugin(&threeD, 1, concreteOut.data(), outputs); }).empty()
                && status != 0,
            "configurePlugin refuses 3-D logits with an error");
        // an output count that contradicts the attribute confidence
        int32_t const otherCount = 3 - outputs;
        std::vector<DynamicPluginTensorDesc> const otherOut(2, concreteOut[0]);
        check(!errorsOf([&] { status = caps.build->configurePlugin(&concreteIn, 1, otherOut.data(), otherCount); })
                    .empty()
                && status != 0,
            "configurePlugin refuses " + std::to_string(otherCount) + " output(s) with an error");

        // running: the input shape changes between calls
        for (Shape const& shape : {kShapeA, kShapeB, kShapeA})
        {
            checkRun(*caps.runtime, a, shape, c.fp16, seed++);
        }
        RunDescs const wrong = runDescs(a, Shape{1, 7, 9, 17}, c.fp16);
        check(!errorsOf([&] {
            status = caps.runtime->onShapeChange(&wrong.in, 1, wrong.out.data(), wrong.nbOutputs());
        }).empty() && status != 0,
            "onShapeChange refuses 7 channels with an error");
        RunDescs const right = runDescs(a, kShapeA, c.fp16);
        std::vector<PluginTensorDesc> const otherDescs(2, right.out[0]);
        check(!errorsOf([&] {
            status = caps.runtime->onShapeChange(&right.in, 1, otherDescs.data(), otherCount);
        }).empty() && status != 0,
            "onShapeChange refuses " + std::to_string(otherCount) + " output(s) with an error");
    }
}

//! A clone lives on its own: the original destroyed, the clone still runs.
void cloneIsIndependent(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    Attributes const a = dannetAttributes(20, 61, 1, 0, 1);
    PluginPtr original = create(build.creator(), a, TensorRTPhase::kBUILD);
    IPluginV3OneRuntime* const runtime = original != nullptr ? capabilitiesOf(*original).runtime : nullptr;
    if (runtime == nullptr)
    {
        check(false, "runtime capability");
        return;
    }
    checkRun(*runtime, a, kShapeA, false, 11); // the original has seen shape A
    PluginPtr const clone(original->clone());
    check(clone != nullptr && clone != original, "clone gives a new object");
    original.reset();
    if (clone == nullptr)
    {
        return;
    }
    Capabilities const c = capabilitiesOf(*clone);
    check(c.core != nullptr && c.build != nullptr && c.runtime != nullptr, "the clone has all three capabilities");
    if (c.runtime == nullptr)
    {
        return;
    }
    // the clone carries the shape it was cloned with: enqueue straight away
    Logits const logits = randomLogits(kShapeA, false, 12);
    check(mismatchWithReference(enqueue(*c.runtime, a, kShapeA, logits), a, kShapeA, logits).empty(),
        "the clone enqueues with the shape the original was configured for");
    checkRun(*c.runtime, a, kShapeB, false, 13);
    // TensorRT may serialise a clone: its fields must be its own, not the destroyed original's
    Fields fields;
    copyFields(fields, *c.runtime->getFieldsToSerialize());
    check(sameAttributes(*fields.collection(), a), "the clone serialises the original's attributes");
}

//! attachToContext gives each execution context a plugin of its own.
void attachToContext(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    Attributes const a = dannetAttributes(12, 130, 0, 1, 1);
    PluginPtr deserialised = create(build.creator(), a, TensorRTPhase::kRUNTIME);
    IPluginV3OneRuntime* const runtime = deserialised != nullptr ? capabilitiesOf(*deserialised).runtime : nullptr;
    if (runtime == nullptr)
    {
        check(false, "runtime capability in kRUNTIME");
        return;
    }
    HostResourceContext context;
    PluginPtr const first(runtime->attachToContext(&context));
    PluginPtr const second(runtime->attachToContext(&context));
    check(first != nullptr && second != nullptr && first != deserialised && first != second,
        "attachToContext returns a new plugin per context");
    deserialised.reset();
    Capabilities const one = first != nullptr ? capabilitiesOf(*first) : Capabilities{};
    Capabilities const two = second != nullptr ? capabilitiesOf(*second) : Capabilities{};
    if (one.core == nullptr || one.runtime == nullptr || two.runtime == nullptr)
    {
        check(false, "attached plugins have the core and runtime capabilities");
        return;
    }
    // two contexts with different shapes, interleaved: neither may see the other's
    Logits const logitsA = randomLogits(kShapeA, true, 21);
    Logits const logitsB = randomLogits(kShapeB, true, 22);
    std::optional<Outputs> const beforeA = run(*one.runtime, a, kShapeA, logitsA);
    std::optional<Outputs> const b = run(*two.runtime, a, kShapeB, logitsB);
    // context one enqueues again without a shape change: it must still hold shape A
    std::optional<Outputs> const againA = enqueue(*one.runtime, a, kShapeA, logitsA);
    check(mismatchWithReference(beforeA, a, kShapeA, logitsA).empty(), "context one: outputs == host reference");
    check(mismatchWithReference(b, a, kShapeB, logitsB).empty(), "context two: outputs == host reference");
    check(mismatchWithReference(againA, a, kShapeA, logitsA).empty(),
        "context one is unaffected by context two's shape change");
}

//! getFieldsToSerialize -> (engine bytes) -> createPlugin(kRUNTIME): the same labels, with the
//! original plugin long destroyed.
void serialisationRoundTrip(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    for (Attributes const& a : {dannetAttributes(20, 61, 1, 0, 1), dannetAttributes(12, 130, 0, 1, 0),
             dannetAttributes(20, 61, 1, 0, 0, 1), dannetAttributes(12, 130, 0, 1, 1, 1)})
    {
        PluginPtr original = create(build.creator(), a, TensorRTPhase::kBUILD);
        IPluginV3OneRuntime* const runtime = original != nullptr ? capabilitiesOf(*original).runtime : nullptr;
        if (runtime == nullptr)
        {
            check(false, "runtime capability");
            continue;
        }
        Logits const logits = randomLogits(kShapeA, false, 31);
        std::optional<Outputs> const before = run(*runtime, a, kShapeA, logits);
        Fields engine;
        copyFields(engine, *runtime->getFieldsToSerialize());
        check(sameAttributes(*engine.collection(), a), "the serialised fields are the attributes");
        original.reset();

        PluginPtr const restored(
            build.creator().createPlugin("reweight_argmax", engine.collection(), TensorRTPhase::kRUNTIME));
        check(restored != nullptr, "createPlugin(kRUNTIME) from the serialised fields");
        if (restored == nullptr)
        {
            continue;
        }
        HostResourceContext context;
        PluginPtr const attached(capabilitiesOf(*restored).runtime->attachToContext(&context));
        IPluginV3OneRuntime* const restoredRuntime = attached != nullptr ? capabilitiesOf(*attached).runtime : nullptr;
        if (restoredRuntime == nullptr)
        {
            check(false, "the restored plugin attaches to a context");
            continue;
        }
        std::optional<Outputs> const after = run(*restoredRuntime, a, kShapeA, logits);
        check(before && after && before->labels == after->labels && before->confidence == after->confidence
                && mismatchWithReference(after, a, kShapeA, logits).empty(),
            "the restored plugin's outputs are identical (" + describe(a, kShapeA, false) + ")");
        checkRun(*restoredRuntime, a, kShapeB, true, 32);
    }
}

//! Logits beyond the kernel's size limits (README, op spec) are refused where TensorRT lets a plugin
//! refuse them, with a logged line naming the quantity and its limit: at build time the largest
//! logits of the optimisation profile (configurePlugin), at run time the concrete shape
//! (onShapeChange); the largest allowed are accepted.
void sizeLimits(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    Attributes const a = dannetAttributes(20, 61, 1, 0, 0);
    PluginPtr const plugin = create(build.creator(), a, TensorRTPhase::kBUILD);
    Capabilities const caps = plugin != nullptr ? capabilitiesOf(*plugin) : Capabilities{};
    if (caps.build == nullptr || caps.runtime == nullptr)
    {
        check(false, "createPlugin with build and runtime capabilities");
        return;
    }
    struct Case
    {
        char const* what;
        std::vector<int64_t> largest; //!< N x C x h x w
        std::vector<std::string> named;
    };
    // the limits from CUDA's grid (z at most 65535) and the kernel's int offsets and fp32 coordinates
    std::vector<Case> const refused = {
        {"19 x 11000 x 11000 logits per image", {1, 19, 11000, 11000}, {"C x h x w", "2147483647"}},
        {"batch 65536", {65536, 19, 9, 17}, {"batch", "65535"}},
        {"logits 2^20 + 1 wide", {1, 19, 9, 1048577}, {"width", "1048576"}},
        {"logits 2^20 + 1 high", {1, 19, 1048577, 9}, {"height", "1048576"}},
    };
    std::vector<Case> const accepted = {
        {"19 x 10631 x 10631 logits per image", {1, 19, 10631, 10631}, {}},
        {"batch 65535", {65535, 19, 9, 17}, {}},
    };
    DataType const type = DataType::kFLOAT;
    std::vector<DynamicPluginTensorDesc> const out(1, buildTensor(dims({-1, 20, 61}), DataType::kINT32));
    for (bool const tooLarge : {true, false})
    {
        for (Case const& c : tooLarge ? refused : accepted)
        {
            std::string const expected = tooLarge ? " refused with an error naming the limit" : " accepted";
            Dims const largest = dims(c.largest);
            // build time: the profile allows these logits at most (dynamic N, h, w), or they are static
            for (bool const dynamic : {true, false})
            {
                DynamicPluginTensorDesc const in = dynamic
                    ? buildTensor(dims({-1, 19, -1, -1}), type, dims({1, 19, 1, 1}), largest, dims({1, 19, 9, 17}))
                    : buildTensor(largest, type);
                int32_t status = 0;
                std::vector<std::string> const errors
                    = errorsOf([&] { status = caps.build->configurePlugin(&in, 1, out.data(), 1); });
                bool const asExpected
                    = tooLarge ? status != 0 && anyContainsAll(errors, c.named) : status == 0 && errors.empty();
                check(asExpected,
                    std::string("configurePlugin, ") + (dynamic ? "profile maximum " : "static ") + c.what + expected);
            }
            // run time
            Shape const shape{static_cast<int>(c.largest[0]), static_cast<int>(c.largest[1]),
                static_cast<int>(c.largest[2]), static_cast<int>(c.largest[3])};
            RunDescs const descs = runDescs(a, shape, false);
            int32_t status = 0;
            std::vector<std::string> const errors
                = errorsOf([&] { status = caps.runtime->onShapeChange(&descs.in, 1, descs.out.data(), 1); });
            bool const asExpected
                = tooLarge ? status != 0 && anyContainsAll(errors, c.named) : status == 0 && errors.empty();
            check(asExpected, std::string("onShapeChange, ") + c.what + expected);
        }
    }
}

//! A launch that CUDA refuses fails enqueue with a logged line naming the CUDA error. TensorRT calls
//! onShapeChange before enqueue; without it the plugin's grid is empty, which CUDA refuses.
void enqueueNamesTheCudaError(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    Attributes const a = dannetAttributes(20, 61, 1, 0, 0);
    PluginPtr const plugin = create(build.creator(), a, TensorRTPhase::kRUNTIME);
    IPluginV3OneRuntime* const runtime = plugin != nullptr ? capabilitiesOf(*plugin).runtime : nullptr;
    if (runtime == nullptr)
    {
        check(false, "runtime capability");
        return;
    }
    RunDescs const descs = runDescs(a, kShapeA, false);
    testSupport::DeviceBuffer<float> const logits(kShapeA.count());
    testSupport::DeviceBuffer<int32_t> const labels(static_cast<size_t>(kShapeA.batch) * a.outHeight * a.outWidth);
    void const* inputs[] = {logits.data()};
    void* outputs[] = {labels.data()};
    int32_t status = 0;
    std::vector<std::string> const errors = errorsOf(
        [&] { status = runtime->enqueue(&descs.in, descs.out.data(), inputs, outputs, nullptr, nullptr); });
    check(status != 0 && anyContains(errors, "cudaErrorInvalidConfiguration"),
        "enqueue of an empty grid fails, naming cudaErrorInvalidConfiguration");
    cudaGetLastError(); // the error is reported; it must not linger for the next test
}

} // namespace

std::vector<NamedTest> runtimeTests()
{
    return {
        {"configure and enqueue (shapes A, B, A)", configureAndEnqueue},
        {"size limits (configurePlugin, onShapeChange)", sizeLimits},
        {"enqueue names the CUDA error", enqueueNamesTheCudaError},
        {"clone is independent", cloneIsIndependent},
        {"attachToContext", attachToContext},
        {"serialisation round trip", serialisationRoundTrip},
    };
}

} // namespace host
