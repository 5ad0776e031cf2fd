/*
 * ReweightArgmax TensorRT plugin (IPluginV3): class logits -> bilinear upsampling -> per-class
 * weights -> argmax (and, with the attribute confidence = 1, a second output: each pixel's
 * confidence level), as one kernel. Op spec: README.md beside this file.
 */
#pragma once

#include "NvInferRuntime.h"
#include "reweightArgmaxKernel.cuh"

#include <cstdint>
#include <string>
#include <vector>

namespace dannet
{

constexpr char const* kREWEIGHT_ARGMAX_NAME = "ReweightArgmax";
constexpr char const* kREWEIGHT_ARGMAX_VERSION = "1";
constexpr char const* kPLUGIN_NAMESPACE = "dannet";

//! The op's attributes, as the ONNX node carries them.
struct ReweightArgmaxAttributes
{
    std::vector<float> weights;
    int32_t outHeight{0};
    int32_t outWidth{0};
    int32_t alignCorners{1};
    int32_t pack4{0};
    int32_t mode{0};
    int32_t confidence{0}; //!< 1: a second output, the confidence levels, packed like the labels
};

//! Checks what can be checked without the input shape; returns an empty string or the problem.
std::string validateAttributes(ReweightArgmaxAttributes const& attributes);

class ReweightArgmaxPlugin : public nvinfer1::IPluginV3,
                             public nvinfer1::IPluginV3OneCore,
                             public nvinfer1::IPluginV3OneBuild,
                             public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit ReweightArgmaxPlugin(ReweightArgmaxAttributes attributes);
    ReweightArgmaxPlugin(ReweightArgmaxPlugin const& other);
    ReweightArgmaxPlugin& operator=(ReweightArgmaxPlugin const&) = delete;
    ~ReweightArgmaxPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    //! Whether TensorRT passes the plugin's tensors: one input, getNbOutputs() outputs (else logs why not).
    bool expectedTensorCounts(int32_t nbInputs, int32_t nbOutputs) const noexcept;
    //! The kernel parameters for an input of shape N x C x H x W; false (and a log line) if they are invalid.
    bool makeKernelParams(nvinfer1::Dims const& input, ReweightArgmaxParams& params) const noexcept;
    void exposeFields();

    ReweightArgmaxAttributes mAttributes;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    ReweightArgmaxParams mParams{};
};

class ReweightArgmaxPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    ReweightArgmaxPluginCreator();
    ~ReweightArgmaxPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

//! Where the plugin logs: the logger that `finder` returns at the moment of each message (stderr
//! without a finder or logger). ILoggerFinder::findLogger() gives the logger of the engine or
//! execution context calling the plugin right now, valid for that call only, so it is never kept.
void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

} // namespace dannet
