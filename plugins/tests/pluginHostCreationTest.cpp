/*
 * The plugin's creation, as TensorRT's ONNX parser and engine deserialisation drive it: the
 * creator's field names, createPlugin from the fields the parser passes (and from what other
 * producers may pass), in both phases; every bad attribute of the op specification
 * (reweightArgmax/README.md) refused with a logged error naming it; the capabilities a plugin
 * hands out. Run by pluginHostMain.cpp.
 */
#include "pluginHostDriver.h"

#include <cmath>
#include <cstring>

using namespace nvinfer1;

namespace host
{
namespace
{

void fieldNames(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    PluginFieldCollection const* const fc = build.creator().getFieldNames();
    check(fc != nullptr && fc->nbFields == 7, "getFieldNames lists seven attributes");
    if (fc == nullptr)
    {
        return;
    }
    char const* const expected[]
        = {"weights", "out_height", "out_width", "align_corners", "pack4", "mode", "confidence"};
    for (int32_t i = 0; i < fc->nbFields && i < 7; ++i)
    {
        PluginField const& f = fc->fields[i];
        PluginFieldType const type = i == 0 ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32;
        check(f.name != nullptr && std::strcmp(f.name, expected[i]) == 0 && f.type == type,
            std::string("field ") + std::to_string(i) + " is " + expected[i] + " of its ONNX type");
    }
}

//! What getFieldsToSerialize says of `plugin`, as an int attribute (-999 if it has none of that name).
int32_t serialisedInt(IPluginV3& plugin, char const* name)
{
    Fields copy;
    copyFields(copy, *capabilitiesOf(plugin).runtime->getFieldsToSerialize());
    PluginFieldCollection const* const fc = copy.collection();
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        if (std::strcmp(fc->fields[i].name, name) == 0)
        {
            return *static_cast<int32_t const*>(fc->fields[i].data);
        }
    }
    return -999;
}

//! The fields TensorRT's ONNX parser passes, in both phases; attributes the node omits take their defaults.
void createFromParserFields(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    for (TensorRTPhase const phase : {TensorRTPhase::kBUILD, TensorRTPhase::kRUNTIME})
    {
        Attributes const a = dannetAttributes(12, 21, 0, 1, 1, 1);
        PluginPtr plugin;
        std::vector<std::string> const errors = errorsOf([&] { plugin = create(build.creator(), a, phase); });
        check(plugin != nullptr && errors.empty(), "createPlugin from the parser's fields in " + phaseName(phase));
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

    // a node with only weights and the output size: align_corners 1, pack4 0, mode 0 (README: DANNet's
    // choices), confidence 0 (labels only: a graph exported before the attribute existed)
    Fields minimal;
    addParserFields(minimal, *build.creator().getFieldNames(), dannetAttributes(3, 5, 1, 0, 0),
        {"align_corners", "pack4", "mode", "confidence"});
    PluginPtr const plugin(build.creator().createPlugin("minimal", minimal.collection(), TensorRTPhase::kBUILD));
    check(plugin != nullptr, "createPlugin with the optional attributes omitted");
    if (plugin != nullptr)
    {
        check(serialisedInt(*plugin, "out_height") == 3 && serialisedInt(*plugin, "out_width") == 5,
            "out_height 3, out_width 5");
        check(serialisedInt(*plugin, "align_corners") == 1 && serialisedInt(*plugin, "pack4") == 0
                && serialisedInt(*plugin, "mode") == 0 && serialisedInt(*plugin, "confidence") == 0,
            "defaults align_corners 1, pack4 0, mode 0, confidence 0");
        check(capabilitiesOf(*plugin).build->getNbOutputs() == 1, "without confidence: one output");
    }

    // the largest output the kernel's grid and int arithmetic allow (README, op spec)
    Attributes const largest = dannetAttributes(524280, 2147483520, 1, 1, 0);
    PluginPtr largestPlugin;
    std::vector<std::string> const errors
        = errorsOf([&] { largestPlugin = create(build.creator(), largest, TensorRTPhase::kBUILD); });
    check(largestPlugin != nullptr && errors.empty(), "createPlugin with out_height 524280, out_width 2^31 - 128");
}

//! What other producers may pass: every attribute of the node, in its order, the strings that select
//! the creator (plugin_version, plugin_namespace) included. They are not the op's attributes.
void createFromForwardedNodeAttributes(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    Attributes const a = dannetAttributes(12, 21, 0, 1, 1, 1);
    Fields fields;
    addForwardedNodeAttributes(fields, a);
    PluginPtr plugin;
    std::vector<std::string> const errors = errorsOf(
        [&] { plugin.reset(build.creator().createPlugin("forwarded", fields.collection(), TensorRTPhase::kBUILD)); });
    check(plugin != nullptr && errors.empty(), "createPlugin from every node attribute, in the node's order");
    if (plugin == nullptr)
    {
        return;
    }
    Fields copy;
    copyFields(copy, *capabilitiesOf(*plugin).runtime->getFieldsToSerialize());
    check(sameAttributes(*copy.collection(), a), "it serialises the op's seven attributes, not the node's strings");
}

//! Every bad attribute of the op spec: creation fails and the calling engine's logger says why.
void badAttributes(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    PluginFieldCollection const& fieldNames = *build.creator().getFieldNames();
    struct Case
    {
        char const* what;
        std::function<void(Fields&)> fields;
        char const* named;          //!< the log line must name this
        char const* alsoNamed = ""; //!< and this (a size limit: the largest value allowed)
    };
    Attributes const good = dannetAttributes(8, 8, 1, 0, 0);
    // a node whose attributes are `good` changed as `change` says, as the parser passes it
    auto const with = [&fieldNames, good](auto&& change) {
        return [&fieldNames, good, change](Fields& f) {
            Attributes a = good;
            change(a);
            addParserFields(f, fieldNames, a);
        };
    };
    // the parser's fields of `good` but `omitted`, then `extra`
    auto const allBut = [&fieldNames, good](std::string const& omitted, std::function<void(Fields&)> extra) {
        return [&fieldNames, good, omitted, extra](Fields& f) {
            addParserFields(f, fieldNames, good, {omitted});
            extra(f);
        };
    };
    auto const none = [](Fields&) {};
    static float const kHalfWeights[2] = {1.0f, 1.0f};
    static int32_t const kOne = 1;
    std::vector<Case> const cases = {
        {"weights missing", allBut("weights", none), "'weights'"},
        {"weights as INTS", allBut("weights", [](Fields& f) { f.ints("weights", {1, 2}); }), "'weights'"},
        {"weights as a FLOAT16 tensor",
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
        }),
            "'weights'"},
        {"mode 1 with a negative weight", with([](Attributes& a) {
            a.mode = 1;
            a.weights[18] = -0.5f;
        }),
            "'weights'"},
        {"out_height 0", with([](Attributes& a) { a.outHeight = 0; }), "'out_height'"},
        {"out_width -3", with([](Attributes& a) { a.outWidth = -3; }), "'out_width'"},
        // the kernel's grid: 65535 blocks of 8 rows; its columns in int up to the last block of 128
        {"out_height 600000", with([](Attributes& a) { a.outHeight = 600000; }), "'out_height'", "524280"},
        {"out_height 524281", with([](Attributes& a) { a.outHeight = 524281; }), "'out_height'", "524280"},
        {"out_width 2^31 - 1", with([](Attributes& a) { a.outWidth = 2147483647; }), "'out_width'", "2147483520"},
        {"align_corners 2", with([](Attributes& a) { a.alignCorners = 2; }), "'align_corners'"},
        {"pack4 -1", with([](Attributes& a) { a.pack4 = -1; }), "'pack4'"},
        {"mode 2", with([](Attributes& a) { a.mode = 2; }), "'mode'"},
        {"mode -1", with([](Attributes& a) { a.mode = -1; }), "'mode'"},
        {"confidence 2", with([](Attributes& a) { a.confidence = 2; }), "'confidence'"},
        {"confidence -1", with([](Attributes& a) { a.confidence = -1; }), "'confidence'"},
        {"confidence as FLOAT", allBut("confidence", [](Fields& f) { f.floats("confidence", {1.0f}); }),
            "'confidence'"},
        {"out_height as FLOAT", allBut("out_height", [](Fields& f) { f.floats("out_height", {8.0f}); }),
            "'out_height'"},
        {"mode as INTS of two", allBut("mode", [](Fields& f) { f.ints("mode", {0, 1}); }), "'mode'"},
        // what only other producers pass (the parser passes getFieldNames()'s names, with data)
        {"an unknown attribute", allBut("", [](Fields& f) { f.floats("scale", {2.0f}); }), "'scale'"},
        {"out_width without data",
            allBut("out_width",
                [](Fields& f) { f.raw(PluginField("out_width", nullptr, PluginFieldType::kINT32, 1)); }),
            "'out_width'"},
        {"a field without a name",
            allBut("", [](Fields& f) { f.raw(PluginField(nullptr, &kOne, PluginFieldType::kINT32, 1)); }), "name"},
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
            check(anyContainsAll(errors, {c.named, c.alsoNamed}),
                std::string(c.what) + ": an error naming " + c.named + " " + c.alsoNamed + " is logged");
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
    check(isInterface(plugin.get(), "PLUGIN"), "the plugin is an IPluginV3 (kind PLUGIN, 1)");
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

} // namespace

std::vector<NamedTest> creationTests()
{
    return {
        {"field names", fieldNames},
        {"createPlugin from the parser's fields", createFromParserFields},
        {"createPlugin from every node attribute (other producers)", createFromForwardedNodeAttributes},
        {"bad attributes", badAttributes},
        {"capabilities", capabilities},
    };
}

} // namespace host
