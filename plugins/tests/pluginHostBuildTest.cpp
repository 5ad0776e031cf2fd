/*
 * What TensorRT's builder asks the plugin before it configures it: output count and types, output
 * shapes as dimension expressions (dynamic batch, pack4's ceil(W/4), channels that contradict the
 * weights), and every DataType x TensorFormat at every position of supportsFormatCombination, each
 * answer checked against the op specification (reweightArgmax/README.md), with one output (labels)
 * and with two (the attribute confidence: labels and confidence). Run by pluginHostMain.cpp.
 */
#include "pluginHostDriver.h"

#include <cstdio>

using namespace nvinfer1;

namespace host
{
namespace
{

void outputTypes(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    for (int32_t const confidence : {0, 1})
    {
        PluginPtr const plugin
            = create(build.creator(), dannetAttributes(8, 8, 1, 1, 0, confidence), TensorRTPhase::kBUILD);
        IPluginV3OneBuild* const b = plugin != nullptr ? capabilitiesOf(*plugin).build : nullptr;
        check(b != nullptr, "build capability");
        if (b == nullptr)
        {
            continue;
        }
        int32_t const outputs = 1 + confidence;
        std::string const what = confidence != 0 ? "with confidence: " : "labels only: ";
        check(b->getNbOutputs() == outputs, what + std::to_string(outputs) + " output(s)");
        for (DataType const in : {DataType::kFLOAT, DataType::kHALF})
        {
            DataType out[2] = {DataType::kBOOL, DataType::kBOOL};
            check(b->getOutputDataTypes(out, outputs, &in, 1) == 0 && out[0] == DataType::kINT32
                    && out[outputs - 1] == DataType::kINT32,
                what + (in == DataType::kFLOAT ? "fp32" : "fp16") + " in -> int32 out(s)");
        }
        DataType const two[2] = {DataType::kFLOAT, DataType::kFLOAT};
        DataType out[2] = {DataType::kBOOL, DataType::kBOOL};
        int32_t status = 0;
        std::vector<std::string> errors = errorsOf([&] { status = b->getOutputDataTypes(out, outputs, two, 2); });
        check(status != 0 && !errors.empty(), what + "two inputs: refused with an error");
        errors = errorsOf([&] { status = b->getOutputDataTypes(out, 2 - confidence, two, 1); });
        check(status != 0 && !errors.empty(),
            what + std::to_string(2 - confidence) + " output(s): refused with an error");
    }
}

void outputShapes(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    struct Case
    {
        int32_t outWidth;
        int32_t pack4;
        int64_t expectedWidth;
        int32_t confidence;
    };
    for (Case const& c : {Case{130, 0, 130, 0}, Case{1, 1, 1, 0}, Case{128, 1, 32, 0}, Case{129, 1, 33, 0},
             Case{130, 1, 33, 0}, Case{131, 1, 33, 0}, Case{132, 1, 33, 0}, Case{130, 0, 130, 1}, Case{1, 1, 1, 1},
             Case{129, 1, 33, 1}, Case{132, 1, 33, 1}})
    {
        Attributes const a = dannetAttributes(24, c.outWidth, 1, c.pack4, 0, c.confidence);
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
        int32_t const outputs = 1 + c.confidence;
        DimsExprs out[2]{};
        check(b->getOutputShapes(&in, 1, nullptr, 0, out, outputs, builder) == 0,
            what + ": getOutputShapes for " + std::to_string(outputs) + " output(s)");
        for (int32_t i = 0; i < outputs; ++i)
        {
            std::string const output = what + (i == 0 ? ", labels" : ", confidence");
            check(out[i].nbDims == 3, output + ": a 3-D output");
            if (out[i].nbDims != 3)
            {
                continue;
            }
            auto const& n = static_cast<HostDimensionExpr const&>(*out[i].d[0]);
            auto const& h = static_cast<HostDimensionExpr const&>(*out[i].d[1]);
            auto const& w = static_cast<HostDimensionExpr const&>(*out[i].d[2]);
            bool batchFollows = !n.isConstant();
            for (int64_t const batch : {1, 2, 7})
            {
                Symbols const s{{"N", batch}, {"H", 9}, {"W", 17}};
                batchFollows = batchFollows && n.evaluate(s) == batch;
            }
            check(batchFollows, output + ": the output batch is the input's (a run-time expression)");
            check(h.isConstant() && h.getConstantValue() == 24, output + ": height is the constant out_height");
            check(w.isConstant() && w.getConstantValue() == c.expectedWidth,
                output + ": width is the constant " + std::to_string(c.expectedWidth));
        }
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

//! Spec: input fp32 or fp16, linear; outputs (labels, and confidence with the attribute) int32,
//! linear. Every type and format TensorRT has, at every position.
void formatCombinations(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    for (int32_t const confidence : {0, 1})
    {
        PluginPtr const plugin
            = create(build.creator(), dannetAttributes(8, 8, 1, 0, 0, confidence), TensorRTPhase::kBUILD);
        IPluginV3OneBuild* const b = plugin != nullptr ? capabilitiesOf(*plugin).build : nullptr;
        if (b == nullptr)
        {
            check(false, "build capability");
            return;
        }
        int32_t const outputs = 1 + confidence;
        int32_t wrong = 0;
        for (DataType const inputType : {DataType::kFLOAT, DataType::kHALF})
        {
            for (int32_t pos = 0; pos <= outputs; ++pos)
            {
                for (int32_t t = 0; t < EnumMax<DataType>(); ++t)
                {
                    for (int32_t f = 0; f < EnumMax<TensorFormat>(); ++f)
                    {
                        DynamicPluginTensorDesc const output = buildTensor(dims({-1, 8, 8}), DataType::kINT32);
                        DynamicPluginTensorDesc inOut[3]
                            = {buildTensor(dims({-1, 19, -1, -1}), inputType), output, output};
                        auto const type = static_cast<DataType>(t);
                        auto const format = static_cast<TensorFormat>(f);
                        inOut[pos].desc.type = type;
                        inOut[pos].desc.format = format;
                        bool const linear = format == TensorFormat::kLINEAR;
                        bool const expected = linear
                            && (pos == 0 ? type == DataType::kFLOAT || type == DataType::kHALF
                                         : type == DataType::kINT32);
                        if (b->supportsFormatCombination(pos, inOut, 1, outputs) != expected)
                        {
                            ++wrong;
                            check(false,
                                "supportsFormatCombination(pos " + std::to_string(pos) + " of "
                                    + std::to_string(1 + outputs) + ", DataType " + std::to_string(t)
                                    + ", TensorFormat " + std::to_string(f) + ") should be "
                                    + (expected ? "true" : "false"));
                        }
                    }
                }
            }
        }
        std::printf("    %d DataType x %d TensorFormat pairs checked at positions 0..%d\n", EnumMax<DataType>(),
            EnumMax<TensorFormat>(), outputs);
        check(wrong == 0,
            std::string("every format combination answered as the spec says") + (confidence ? " (confidence)" : ""));
    }
}

} // namespace

std::vector<NamedTest> buildTests()
{
    return {
        {"output types", outputTypes},
        {"output shapes", outputShapes},
        {"format combinations", formatCombinations},
    };
}

} // namespace host
