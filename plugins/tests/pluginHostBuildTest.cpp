/*
 * What TensorRT's builder asks the plugin before it configures it: output count and types, output
 * shapes as dimension expressions (dynamic batch, pack4's ceil(W/4), channels that contradict the
 * weights), and every DataType x TensorFormat at both positions of supportsFormatCombination, each
 * answer checked against the op specification (reweightArgmax/README.md). Run by pluginHostMain.cpp.
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
