/*
 * The ReweightArgmax plugin library driven through TensorRT's IPluginV3 lifecycle by a host that
 * plays TensorRT (pluginHost.h, pluginHostDriver.h): the plugin is created from ONNX-parser-style
 * fields, asked everything the builder asks, configured, run on changing shapes (its real kernel,
 * executed by the CPU emulation of CUDA), cloned, attached to contexts, serialised and recreated,
 * and destroyed; every answer is checked against the op specification (reweightArgmax/README.md)
 * and every label against the host reference. Loading, logging and registration: pluginHostLoadingTest.cpp.
 *
 * usage: pluginHostTest --dynamic <getCreators build> --static <self-registering build>
 */
#include "pluginHostDriver.h"

#include <cstdio>
#include <cstring>
#include <exception>

using namespace nvinfer1;

namespace host
{
namespace
{

void fieldNames(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    PluginFieldCollection const* const fc = build.creator().getFieldNames();
    check(fc != nullptr && fc->nbFields == 6, "getFieldNames lists six attributes");
    if (fc == nullptr)
    {
        return;
    }
    char const* const expected[] = {"weights", "out_height", "out_width", "align_corners", "pack4", "mode"};
    for (int32_t i = 0; i < fc->nbFields && i < 6; ++i)
    {
        PluginField const& f = fc->fields[i];
        PluginFieldType const type = i == 0 ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32;
        check(f.name != nullptr && std::strcmp(f.name, expected[i]) == 0 && f.type == type,
            std::string("field ") + std::to_string(i) + " is " + expected[i] + " of its ONNX type");
    }
}

//! Fields as the ONNX parser makes them, in both phases; attributes the node omits take their defaults.
void createFromOnnxFields(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    for (TensorRTPhase const phase : {TensorRTPhase::kBUILD, TensorRTPhase::kRUNTIME})
    {
        Attributes const a = dannetAttributes(12, 21, 0, 1, 1);
        PluginPtr plugin;
        std::vector<std::string> const errors = errorsOf([&] { plugin = create(build.creator(), a, phase); });
        check(plugin != nullptr && errors.empty(), "createPlugin from ONNX fields in " + phaseName(phase));
        if (plugin == nullptr)
        {
            continue;
        }
        Capabilities const c = capabilitiesOf(*plugin);
        check(c.runtime != nullptr, "a plugin has the runtime capability in " + phaseName(phase));
        // what it will serialise is what it was given
        Fields copy;
        copyFields(copy, *c.runtime->getFieldsToSerialize());
        check(sameAttributes(*copy.collection(), a),
            "getFieldsToSerialize returns the attributes it was created from (" + phaseName(phase) + ")");
    }

    // only weights and the output size: align_corners 1, pack4 0, mode 0 (README: DANNet's choices)
    Fields minimal;
    minimal.floats("weights", {1.0f, 2.0f}).ints("out_width", {5}).ints("out_height", {3});
    PluginPtr const plugin(build.creator().createPlugin("minimal", minimal.collection(), TensorRTPhase::kBUILD));
    check(plugin != nullptr, "createPlugin with the optional attributes omitted (and fields in another order)");
    if (plugin != nullptr)
    {
        Fields copy;
        copyFields(copy, *capabilitiesOf(*plugin).runtime->getFieldsToSerialize());
        PluginFieldCollection const* const fc = copy.collection();
        auto const intField = [&](char const* name) {
            for (int32_t i = 0; i < fc->nbFields; ++i)
            {
                if (std::strcmp(fc->fields[i].name, name) == 0)
                {
                    return *static_cast<int32_t const*>(fc->fields[i].data);
                }
            }
            return -999;
        };
        check(intField("out_height") == 3 && intField("out_width") == 5, "out_height 3, out_width 5");
        check(intField("align_corners") == 1 && intField("pack4") == 0 && intField("mode") == 0,
            "defaults align_corners 1, pack4 0, mode 0");
    }
}

//! Every bad attribute of the op spec: creation fails and the calling engine's logger says why.
void badAttributes(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    struct Case
    {
        char const* what;
        std::function<void(Fields&)> fields;
        char const* named; //!< the log line must name this
    };
    Attributes const good = dannetAttributes(8, 8, 1, 0, 0);
    auto const with = [good](auto&& change) {
        return [good, change](Fields& f) {
            Attributes a = good;
            change(a);
            addOnnxAttributes(f, a);
        };
    };
    auto const allBut = [good](std::string const& omitted, std::function<void(Fields&)> extra) {
        return [good, omitted, extra](Fields& f) {
            addOnnxAttributes(f, good, omitted);
            extra(f);
        };
    };
    auto const none = [](Fields&) {};
    static float const kHalfWeights[2] = {1.0f, 1.0f};
    static int32_t const kOne = 1;
    std::vector<Case> const cases = {
        {"weights missing", allBut("weights", none), "'weights'"},
        {"weights as INTS", allBut("weights", [](Fields& f) { f.ints("weights", {1, 2}); }), "'weights'"},
        {"weights as FLOAT16",
            allBut("weights",
                [](Fields& f) { f.raw(PluginField("weights", kHalfWeights, PluginFieldType::kFLOAT16, 2)); }),
            "'weights'"},
        {"no weights", allBut("weights", [](Fields& f) { f.floats("weights", {}); }), "'weights'"},
        {"65 classes", with([](Attributes& a) { a.weights.assign(65, 1.0f); }), "'weights'"},
        {"a NaN weight", with([](Attributes& a) { a.weights[3] = NAN; }), "'weights'"},
        {"an infinite weight", with([](Attributes& a) { a.weights[3] = -INFINITY; }), "'weights'"},
        {"mode 1 with a zero weight", with([](Attributes& a) {
            a.mode = 1;
            a.weights[0] = 0.0f;
        }), "'weights'"},
        {"mode 1 with a negative weight", with([](Attributes& a) {
            a.mode = 1;
            a.weights[18] = -0.5f;
        }),
            "'weights'"},
        {"out_height 0", with([](Attributes& a) { a.outHeight = 0; }), "'out_height'"},
        {"out_width -3", with([](Attributes& a) { a.outWidth = -3; }), "'out_width'"},
        {"align_corners 2", with([](Attributes& a) { a.alignCorners = 2; }), "'align_corners'"},
        {"pack4 -1", with([](Attributes& a) { a.pack4 = -1; }), "'pack4'"},
        {"mode 2", with([](Attributes& a) { a.mode = 2; }), "'mode'"},
        {"mode -1", with([](Attributes& a) { a.mode = -1; }), "'mode'"},
        {"out_height as FLOAT", allBut("out_height", [](Fields& f) { f.floats("out_height", {8.0f}); }),
            "'out_height'"},
        {"mode as INTS of two", allBut("mode", [](Fields& f) { f.ints("mode", {0, 1}); }), "'mode'"},
        {"an unknown attribute", allBut("", [](Fields& f) { f.floats("scale", {2.0f}); }), "'scale'"},
        {"out_width without data",
            allBut("out_width",
                [](Fields& f) { f.raw(PluginField("out_width", nullptr, PluginFieldType::kINT32, 1)); }),
            "'out_width'"},
        {"a field without a name",
            [good](Fields& f) {
                addOnnxAttributes(f, good);
                f.raw(PluginField(nullptr, &kOne, PluginFieldType::kINT32, 1));
            },
            "name"},
    };
    for (Case const& c : cases)
    {
        for (TensorRTPhase const phase : {TensorRTPhase::kBUILD, TensorRTPhase::kRUNTIME})
        {
            Fields fields;
            c.fields(fields);
            PluginPtr plugin;
            std::vector<std::string> const errors = errorsOf(
                [&] { plugin.reset(build.creator().createPlugin("bad", fields.collection(), phase)); });
            check(plugin == nullptr, std::string(c.what) + ": createPlugin fails (" + phaseName(phase) + ")");
            check(anyContains(errors, c.named), std::string(c.what) + ": an error naming " + c.named + " is logged");
        }
    }
}

void capabilities(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    PluginPtr const plugin = create(build.creator(), dannetAttributes(8, 8, 1, 0, 0), TensorRTPhase::kBUILD);
    check(plugin != nullptr, "createPlugin");
    if (plugin == nullptr)
    {
        return;
    }
    InterfaceInfo const info = plugin->getInterfaceInfo();
    check(std::strcmp(info.kind, "PLUGIN") == 0 && info.major == 1, "the plugin is an IPluginV3 (kind PLUGIN, 1)");
    Capabilities const c = capabilitiesOf(*plugin);
    check(c.core != nullptr, "kCORE is an IPluginV3OneCore");
    check(c.build != nullptr, "kBUILD is an IPluginV3OneBuild");
    check(c.runtime != nullptr, "kRUNTIME is an IPluginV3OneRuntime");
    if (c.core != nullptr)
    {
        check(std::strcmp(c.core->getPluginName(), kNAME) == 0 && std::strcmp(c.core->getPluginVersion(), kVERSION) == 0
                && std::strcmp(c.core->getPluginNamespace(), kNAMESPACE) == 0,
            "core name/version/namespace: ReweightArgmax/1/dannet");
    }
    check(plugin->getCapabilityInterface(static_cast<PluginCapabilityType>(3)) == nullptr,
        "an unknown capability type gives nullptr");
}

void outputTypes(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    PluginPtr const plugin = create(build.creator(), dannetAttributes(8, 8, 1, 1, 0), TensorRTPhase::kBUILD);
    IPluginV3OneBuild* const b = plugin != nullptr ? capabilitiesOf(*plugin).build : nullptr;
    check(b != nullptr, "build capability");
    if (b == nullptr)
    {
        return;
    }
    check(b->getNbOutputs() == 1, "one output");
    for (DataType const in : {DataType::kFLOAT, DataType::kHALF})
    {
        DataType out = DataType::kBOOL;
        check(b->getOutputDataTypes(&out, 1, &in, 1) == 0 && out == DataType::kINT32,
            std::string(in == DataType::kFLOAT ? "fp32" : "fp16") + " in -> int32 out");
    }
    DataType const two[2] = {DataType::kFLOAT, DataType::kFLOAT};
    DataType out = DataType::kBOOL;
    int32_t status = 0;
    std::vector<std::string> const errors = errorsOf([&] { status = b->getOutputDataTypes(&out, 1, two, 2); });
    check(status != 0 && !errors.empty(), "two inputs: refused with an error");
}

void outputShapes(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    struct Case
    {
        int32_t outWidth;
        int32_t pack4;
        int64_t expectedWidth;
    };
    for (Case const& c : {Case{130, 0, 130}, Case{1, 1, 1}, Case{128, 1, 32}, Case{129, 1, 33}, Case{130, 1, 33},
             Case{131, 1, 33}, Case{132, 1, 33}})
    {
        Attributes const a = dannetAttributes(24, c.outWidth, 1, c.pack4, 0);
        PluginPtr const plugin = create(build.creator(), a, TensorRTPhase::kBUILD);
        IPluginV3OneBuild* const b = plugin != nullptr ? capabilitiesOf(*plugin).build : nullptr;
        if (b == nullptr)
        {
            check(false, "build capability");
            continue;
        }
        std::string const what = "out_width " + std::to_string(c.outWidth) + (c.pack4 != 0 ? " pack4" : "");
        HostExprBuilder builder;
        // dynamic batch, height and width; 19 channels known
        DimsExprs const in{4, {builder.symbol("N"), builder.known(19), builder.symbol("H"), builder.symbol("W")}};
        DimsExprs out{};
        check(b->getOutputShapes(&in, 1, nullptr, 0, &out, 1, builder) == 0 && out.nbDims == 3,
            what + ": getOutputShapes gives a 3-D output");
        if (out.nbDims != 3)
        {
            continue;
        }
        auto const& n = static_cast<HostDimensionExpr const&>(*out.d[0]);
        auto const& h = static_cast<HostDimensionExpr const&>(*out.d[1]);
        auto const& w = static_cast<HostDimensionExpr const&>(*out.d[2]);
        bool batchFollows = !n.isConstant();
        for (int64_t const batch : {1, 2, 7})
        {
            Symbols const s{{"N", batch}, {"H", 9}, {"W", 17}};
            batchFollows = batchFollows && n.evaluate(s) == batch;
        }
        check(batchFollows, what + ": the output batch is the input's (a run-time expression)");
        check(h.isConstant() && h.getConstantValue() == 24, what + ": height is the constant out_height");
        check(w.isConstant() && w.getConstantValue() == c.expectedWidth,
            what + ": width is the constant " + std::to_string(c.expectedWidth));
        check(builder.unexpectedCalls() == 0, what + ": no size tensor declared");
    }

    PluginPtr const plugin = create(build.creator(), dannetAttributes(24, 61, 1, 0, 0), TensorRTPhase::kBUILD);
    IPluginV3OneBuild* const b = plugin != nullptr ? capabilitiesOf(*plugin).build : nullptr;
    if (b == nullptr)
    {
        check(false, "build capability");
        return;
    }
    {
        HostExprBuilder builder;
        DimsExprs const in{4, {builder.known(3), builder.known(19), builder.known(9), builder.known(17)}};
        DimsExprs out{};
        check(b->getOutputShapes(&in, 1, nullptr, 0, &out, 1, builder) == 0 && out.nbDims == 3 && out.d[0]->isConstant()
                && out.d[0]->getConstantValue() == 3,
            "a static batch of 3 stays the constant 3");
    }
    {
        HostExprBuilder builder;
        DimsExprs const in{4, {builder.symbol("N"), builder.known(5), builder.symbol("H"), builder.symbol("W")}};
        DimsExprs out{};
        int32_t status = 0;
        std::vector<std::string> const errors
            = errorsOf([&] { status = b->getOutputShapes(&in, 1, nullptr, 0, &out, 1, builder); });
        check(status != 0 && anyContains(errors, "'weights'"), "5 channels against 19 weights: refused with an error");
    }
    {
        HostExprBuilder builder;
        DimsExprs const in{3, {builder.symbol("N"), builder.known(19), builder.symbol("H")}};
        DimsExprs out{};
        int32_t status = 0;
        std::vector<std::string> const errors
            = errorsOf([&] { status = b->getOutputShapes(&in, 1, nullptr, 0, &out, 1, builder); });
        check(status != 0 && !errors.empty(), "3-D logits: refused with an error");
    }
}

//! Spec: input fp32 or fp16, linear; output int32, linear. Every type and format TensorRT has.
void formatCombinations(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    PluginPtr const plugin = create(build.creator(), dannetAttributes(8, 8, 1, 0, 0), TensorRTPhase::kBUILD);
    IPluginV3OneBuild* const b = plugin != nullptr ? capabilitiesOf(*plugin).build : nullptr;
    if (b == nullptr)
    {
        check(false, "build capability");
        return;
    }
    int32_t wrong = 0;
    for (DataType const inputType : {DataType::kFLOAT, DataType::kHALF})
    {
        for (int32_t pos = 0; pos < 2; ++pos)
        {
            for (int32_t t = 0; t < EnumMax<DataType>(); ++t)
            {
                for (int32_t f = 0; f < EnumMax<TensorFormat>(); ++f)
                {
                    DynamicPluginTensorDesc inOut[2] = {buildTensor(dims({-1, 19, -1, -1}), inputType),
                        buildTensor(dims({-1, 8, 8}), DataType::kINT32)};
                    auto const type = static_cast<DataType>(t);
                    auto const format = static_cast<TensorFormat>(f);
                    inOut[pos].desc.type = type;
                    inOut[pos].desc.format = format;
                    bool const linear = format == TensorFormat::kLINEAR;
                    bool const expected = linear
                        && (pos == 0 ? type == DataType::kFLOAT || type == DataType::kHALF : type == DataType::kINT32);
                    if (b->supportsFormatCombination(pos, inOut, 1, 1) != expected)
                    {
                        ++wrong;
                        check(false,
                            "supportsFormatCombination(pos " + std::to_string(pos) + ", DataType " + std::to_string(t)
                                + ", TensorFormat " + std::to_string(f) + ") should be "
                                + (expected ? "true" : "false"));
                    }
                }
            }
        }
    }
    std::printf("    %d DataType x %d TensorFormat pairs checked at positions 0 and 1\n", EnumMax<DataType>(),
        EnumMax<TensorFormat>());
    check(wrong == 0, "every format combination answered as the spec says");
}

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
        DynamicPluginTensorDesc const dynamicOut
            = buildTensor(dims({-1, h, w}), DataType::kINT32, dims({1, h, w}), dims({4, h, w}), dims({2, h, w}));
        check(caps.build->configurePlugin(&dynamicIn, 1, &dynamicOut, 1) == 0, "configurePlugin with -1 dimensions");
        DynamicPluginTensorDesc const concreteIn = buildTensor(dims({2, 19, 9, 17}), type);
        DynamicPluginTensorDesc const concreteOut = buildTensor(dims({2, h, w}), DataType::kINT32);
        check(caps.build->configurePlugin(&concreteIn, 1, &concreteOut, 1) == 0,
            "configurePlugin with concrete dimensions");
        DynamicPluginTensorDesc const wrongChannels = buildTensor(dims({-1, 7, -1, -1}), type);
        int32_t status = 0;
        std::vector<std::string> const errors
            = errorsOf([&] { status = caps.build->configurePlugin(&wrongChannels, 1, &concreteOut, 1); });
        check(status != 0 && anyContains(errors, "'weights'"), "configurePlugin refuses 7 channels with an error");
        DynamicPluginTensorDesc const threeD = buildTensor(dims({-1, 19, -1}), type);
        check(!errorsOf([&] { status = caps.build->configurePlugin(&threeD, 1, &concreteOut, 1); }).empty()
                && status != 0,
            "configurePlugin refuses 3-D logits with an error");

        // running: the input shape changes between calls
        for (Shape const& shape : {kShapeA, kShapeB, kShapeA})
        {
            checkRun(*caps.runtime, a, shape, c.fp16, seed++);
        }
        RunDescs const wrong = runDescs(a, Shape{1, 7, 9, 17}, c.fp16);
        check(!errorsOf([&] { status = caps.runtime->onShapeChange(&wrong.in, 1, &wrong.out, 1); }).empty()
                && status != 0,
            "onShapeChange refuses 7 channels with an error");
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
    std::optional<std::vector<uint32_t>> const labels = enqueue(*c.runtime, a, kShapeA, logits);
    check(labels && *labels == expectedOutput(a, kShapeA, logits),
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
    std::optional<std::vector<uint32_t>> const beforeA = run(*one.runtime, a, kShapeA, logitsA);
    std::optional<std::vector<uint32_t>> const b = run(*two.runtime, a, kShapeB, logitsB);
    // context one enqueues again without a shape change: it must still hold shape A
    std::optional<std::vector<uint32_t>> const againA = enqueue(*one.runtime, a, kShapeA, logitsA);
    std::vector<uint32_t> const expectedA = expectedOutput(a, kShapeA, logitsA);
    check(beforeA && *beforeA == expectedA, "context one: labels == host reference");
    check(b && *b == expectedOutput(a, kShapeB, logitsB), "context two: labels == host reference");
    check(againA && *againA == expectedA, "context one is unaffected by context two's shape change");
}

//! getFieldsToSerialize -> (engine bytes) -> createPlugin(kRUNTIME): the same labels, with the
//! original plugin long destroyed.
void serialisationRoundTrip(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    for (Attributes const& a : {dannetAttributes(20, 61, 1, 0, 1), dannetAttributes(12, 130, 0, 1, 0)})
    {
        PluginPtr original = create(build.creator(), a, TensorRTPhase::kBUILD);
        IPluginV3OneRuntime* const runtime = original != nullptr ? capabilitiesOf(*original).runtime : nullptr;
        if (runtime == nullptr)
        {
            check(false, "runtime capability");
            continue;
        }
        Logits const logits = randomLogits(kShapeA, false, 31);
        std::optional<std::vector<uint32_t>> const before = run(*runtime, a, kShapeA, logits);
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
        std::optional<std::vector<uint32_t>> const after = run(*restoredRuntime, a, kShapeA, logits);
        check(before && after && *before == *after && *after == expectedOutput(a, kShapeA, logits),
            "the restored plugin's labels are identical (" + describe(a, kShapeA, false) + ")");
        checkRun(*restoredRuntime, a, kShapeB, true, 32);
    }
}

} // namespace

std::vector<NamedTest> lifecycleTests()
{
    return {
        {"field names", fieldNames},
        {"createPlugin from ONNX fields", createFromOnnxFields},
        {"bad attributes", badAttributes},
        {"capabilities", capabilities},
        {"output types", outputTypes},
        {"output shapes", outputShapes},
        {"format combinations", formatCombinations},
        {"configure and enqueue (shapes A, B, A)", configureAndEnqueue},
        {"clone is independent", cloneIsIndependent},
        {"attachToContext", attachToContext},
        {"serialisation round trip", serialisationRoundTrip},
    };
}

} // namespace host

namespace
{

std::optional<host::Paths> parseArguments(int argc, char** argv)
{
    host::Paths paths;
    for (int i = 1; i + 1 < argc; i += 2)
    {
        std::string const flag = argv[i];
        std::string& path = flag == "--dynamic" ? paths.dynamicBuild : paths.staticBuild;
        if (flag != "--dynamic" && flag != "--static")
        {
            return std::nullopt;
        }
        path = argv[i + 1];
    }
    if (argc != 5 || paths.dynamicBuild.empty() || paths.staticBuild.empty())
    {
        return std::nullopt;
    }
    return paths;
}

} // namespace

int main(int argc, char** argv)
{
    std::optional<host::Paths> const paths = parseArguments(argc, argv);
    if (!paths)
    {
        std::fprintf(stderr,
            "pluginHostTest: expected --dynamic <libdannet_trt_plugins.so> --static <self-registering build>\n");
        return 2;
    }
#if defined(DANNET_TENSORRT_STANDIN)
    std::printf("TensorRT headers: the stand-in (TensorRT %d.%d API)\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR);
#else
    std::printf("TensorRT headers: %d.%d.%d\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH);
#endif
    // Outside the tests' own scopes, plugin calls come from an engine whose logger collects what
    // nobody expects (reported at the end).
    host::CapturingLogger unexpected;
    host::CallerLogger const caller(unexpected);

    std::vector<host::NamedTest> tests = host::loadingTests();
    for (host::NamedTest const& test : host::lifecycleTests())
    {
        tests.push_back(test);
    }
    for (host::NamedTest const& test : tests)
    {
        int const before = host::failedChecks();
        std::printf("[ RUN  ] %s\n", test.name);
        std::fflush(stdout);
        try
        {
            test.run(*paths);
        }
        catch (std::exception const& e)
        {
            host::check(false, std::string("exception: ") + e.what());
        }
        std::printf("[ %s ] %s\n", host::failedChecks() == before ? " OK " : "FAIL", test.name);
    }
    for (std::string const& message : unexpected.errors())
    {
        host::check(false, "unexpected error logged: " + message);
    }
    int const failed = host::failedChecks();
    std::printf("%s: %d failed check(s)\n", failed == 0 ? "PASSED" : "FAILED", failed);
    return failed == 0 ? 0 : 1;
}
