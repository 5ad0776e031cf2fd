#include "reweightArgmaxPlugin.h"
#include "reweightArgmaxParams.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>

using namespace nvinfer1;

namespace dannet
{
namespace
{
// Set when the library is loaded, read by every plugin method that logs, on any thread.
std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

//! The logger of whoever calls the plugin now (asked on the calling thread, as TensorRT requires).
ILogger* currentLogger() noexcept
{
    ILoggerFinder* const finder = gLoggerFinder.load();
    if (finder == nullptr)
    {
        return nullptr;
    }
    try
    {
        return finder->findLogger();
    }
    catch (...) // findLogger() is not noexcept, our callers are: fall back to stderr
    {
        return nullptr;
    }
}

//! Where an error line goes: the calling engine's logger, or stderr without one. Never throws.
void emitError(char const* line) noexcept
{
    if (ILogger* const logger = currentLogger())
    {
        logger->log(ILogger::Severity::kERROR, line);
    }
    else
    {
        std::fprintf(stderr, "%s\n", line);
    }
}

//! Logs "dannet::ReweightArgmax: " followed by what ``compose`` returns. Every plugin method is
//! noexcept and composing a message allocates: a failure to compose it (std::bad_alloc) is caught
//! here, in this one place, and logged as a fixed line, where it would otherwise terminate the
//! process inside TensorRT.
template <typename Compose>
void logError(Compose const& compose) noexcept
{
    try
    {
        std::string const message = compose();
        emitError((std::string(kPLUGIN_NAMESPACE) + "::" + kREWEIGHT_ARGMAX_NAME + ": " + message).c_str());
    }
    catch (...)
    {
        emitError("dannet::ReweightArgmax: an error occurred, and no memory was left to describe it");
    }
}

//! logError for a message that needs no composing.
void logError(char const* message) noexcept
{
    logError([message] { return std::string(message); });
}

std::string channelMismatch(size_t weights, int64_t channels)
{
    return "attribute 'weights' has " + std::to_string(weights) + " values but the logits have "
        + std::to_string(channels) + " channels";
}

//! "<name> = <value> exceeds the kernel's limit of <largest> (<reason>)": why a size is refused.
std::string beyondLimit(std::string const& name, std::string const& value, SizeLimit const& limit)
{
    return name + " = " + value + " exceeds the kernel's limit of " + std::to_string(limit.largest) + " ("
        + limit.reason + ")";
}

//! beyondLimit for logits N x C x h x w (positive extents) and the limit they exceed.
std::string inputBeyondLimit(SizeLimit const& limit, int64_t batch, int64_t channels, int64_t height, int64_t width)
{
    std::string const area = std::to_string(height) + " x " + std::to_string(width);
    std::string const value = &limit == &kBatchLimit ? std::to_string(batch)
        : &limit == &kInputExtentLimit              ? area
                                                    : std::to_string(channels) + " x " + area;
    return beyondLimit(limit.quantity, value, limit);
}

//! The largest extent ``i`` of a tensor that the engine being built may see: the extent if it is
//! known, else the optimisation profile's maximum, else 1 (each extent is at least 1).
int64_t largestExtent(DynamicPluginTensorDesc const& tensor, int32_t i)
{
    int64_t const known = tensor.desc.dims.d[i];
    int64_t const largest = known >= 0 ? known : tensor.max.nbDims == tensor.desc.dims.nbDims ? tensor.max.d[i] : 1;
    return std::max<int64_t>(largest, 1);
}

constexpr char const* kWEIGHTS = "weights";
constexpr char const* kOUT_HEIGHT = "out_height";
constexpr char const* kOUT_WIDTH = "out_width";
constexpr char const* kALIGN_CORNERS = "align_corners";
constexpr char const* kPACK4 = "pack4";
constexpr char const* kMODE = "mode";
constexpr char const* kCONFIDENCE = "confidence";
} // namespace

void setPluginLoggerFinder(ILoggerFinder* finder) noexcept
{
    gLoggerFinder.store(finder);
}

std::string validateAttributes(ReweightArgmaxAttributes const& a)
{
    if (a.weights.empty() || a.weights.size() > static_cast<size_t>(kMaxClasses))
    {
        return "attribute 'weights' must hold 1.." + std::to_string(kMaxClasses) + " values, got "
            + std::to_string(a.weights.size());
    }
    if (a.outHeight <= 0 || a.outWidth <= 0)
    {
        return "attributes 'out_height' and 'out_width' must be positive, got " + std::to_string(a.outHeight) + " x "
            + std::to_string(a.outWidth);
    }
    if (SizeLimit const* limit = exceededOutputLimit(a.outHeight, a.outWidth))
    {
        int32_t const value = limit == &kOutHeightLimit ? a.outHeight : a.outWidth;
        return beyondLimit(std::string("attribute '") + limit->quantity + "'", std::to_string(value), *limit);
    }
    if ((a.alignCorners != 0 && a.alignCorners != 1) || (a.pack4 != 0 && a.pack4 != 1))
    {
        return "attributes 'align_corners' and 'pack4' must be 0 or 1";
    }
    if (a.mode != 0 && a.mode != 1)
    {
        return "attribute 'mode' must be 0 (multiply logits) or 1 (multiply probabilities), got "
            + std::to_string(a.mode);
    }
    if (a.confidence != 0 && a.confidence != 1)
    {
        return "attribute 'confidence' must be 0 (labels only) or 1 (labels and confidence), got "
            + std::to_string(a.confidence);
    }
    for (float w : a.weights)
    {
        if (!std::isfinite(w) || (a.mode == 1 && !(w > 0.0f)))
        {
            return "attribute 'weights' must be finite (and positive in mode 1)";
        }
    }
    return {};
}

// --- plugin ---------------------------------------------------------------------------------------

ReweightArgmaxPlugin::ReweightArgmaxPlugin(ReweightArgmaxAttributes attributes)
    : mAttributes(std::move(attributes))
{
    exposeFields();
}

ReweightArgmaxPlugin::ReweightArgmaxPlugin(ReweightArgmaxPlugin const& other)
    : mAttributes(other.mAttributes)
    , mParams(other.mParams)
{
    exposeFields(); // the copy's fields must point into its own attributes
}

void ReweightArgmaxPlugin::exposeFields()
{
    mFields = {
        PluginField(kWEIGHTS, mAttributes.weights.data(), PluginFieldType::kFLOAT32,
            static_cast<int32_t>(mAttributes.weights.size())),
        PluginField(kOUT_HEIGHT, &mAttributes.outHeight, PluginFieldType::kINT32, 1),
        PluginField(kOUT_WIDTH, &mAttributes.outWidth, PluginFieldType::kINT32, 1),
        PluginField(kALIGN_CORNERS, &mAttributes.alignCorners, PluginFieldType::kINT32, 1),
        PluginField(kPACK4, &mAttributes.pack4, PluginFieldType::kINT32, 1),
        PluginField(kMODE, &mAttributes.mode, PluginFieldType::kINT32, 1),
        PluginField(kCONFIDENCE, &mAttributes.confidence, PluginFieldType::kINT32, 1),
    };
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

IPluginCapability* ReweightArgmaxPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* ReweightArgmaxPlugin::clone() noexcept
{
    try
    {
        return new ReweightArgmaxPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError([&e] { return std::string("clone failed: ") + e.what(); });
        return nullptr;
    }
}

char const* ReweightArgmaxPlugin::getPluginName() const noexcept
{
    return kREWEIGHT_ARGMAX_NAME;
}

char const* ReweightArgmaxPlugin::getPluginVersion() const noexcept
{
    return kREWEIGHT_ARGMAX_VERSION;
}

char const* ReweightArgmaxPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t ReweightArgmaxPlugin::getNbOutputs() const noexcept
{
    return mAttributes.confidence ? 2 : 1;
}

bool ReweightArgmaxPlugin::expectedTensorCounts(int32_t nbInputs, int32_t nbOutputs) const noexcept
{
    if (nbInputs == 1 && nbOutputs == getNbOutputs())
    {
        return true;
    }
    logError(mAttributes.confidence ? "expects one input (logits) and two outputs (labels, confidence)"
                                    : "expects one input (logits) and one output (labels)");
    return false;
}

int32_t ReweightArgmaxPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* /*inputTypes*/, int32_t nbInputs) const noexcept
{
    if (!expectedTensorCounts(nbInputs, nbOutputs))
    {
        return -1;
    }
    // plugins may not output uint8; pack4 stores four labels (or confidence levels) per int32
    for (int32_t i = 0; i < nbOutputs; ++i)
    {
        outputTypes[i] = DataType::kINT32;
    }
    return 0;
}

int32_t ReweightArgmaxPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    if (!expectedTensorCounts(nbInputs, nbOutputs))
    {
        return -1;
    }
    if (inputs[0].nbDims != 4)
    {
        logError("input must be 4-D logits N x C x H x W");
        return -1;
    }
    IDimensionExpr const* channels = inputs[0].d[1];
    if (channels->isConstant()
        && channels->getConstantValue() != static_cast<int64_t>(mAttributes.weights.size()))
    {
        logError([&] { return channelMismatch(mAttributes.weights.size(), channels->getConstantValue()); });
        return -1;
    }
    int32_t const width = mAttributes.pack4 ? (mAttributes.outWidth + 3) / 4 : mAttributes.outWidth;
    for (int32_t i = 0; i < nbOutputs; ++i) // the confidence has the labels' shape
    {
        outputs[i].nbDims = 3;
        outputs[i].d[0] = inputs[0].d[0];
        outputs[i].d[1] = exprBuilder.constant(mAttributes.outHeight);
        outputs[i].d[2] = exprBuilder.constant(width);
    }
    return 0;
}

bool ReweightArgmaxPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    }
    return pos <= getNbOutputs() && desc.type == DataType::kINT32; // labels, confidence
}

int32_t ReweightArgmaxPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (!expectedTensorCounts(nbInputs, nbOutputs))
    {
        return -1;
    }
    if (in[0].desc.dims.nbDims != 4)
    {
        logError("input must be 4-D logits N x C x H x W");
        return -1;
    }
    int64_t const channels = in[0].desc.dims.d[1];
    if (channels >= 0 && channels != static_cast<int64_t>(mAttributes.weights.size()))
    {
        logError([&] { return channelMismatch(mAttributes.weights.size(), channels); });
        return -1;
    }
    // The largest logits the engine will run, known now (the profile's maximum where the extent is
    // dynamic): an engine that would refuse some of them at run time is refused here, at build time.
    int64_t const batch = largestExtent(in[0], 0);
    int64_t const height = largestExtent(in[0], 2);
    int64_t const width = largestExtent(in[0], 3);
    int64_t const classes = static_cast<int64_t>(mAttributes.weights.size());
    if (SizeLimit const* limit = exceededInputLimit(batch, classes, height, width))
    {
        logError([&] {
            return "the engine is built for logits up to " + std::to_string(batch) + " x " + std::to_string(classes)
                + " x " + std::to_string(height) + " x " + std::to_string(width) + ": "
                + inputBeyondLimit(*limit, batch, classes, height, width);
        });
        return -1;
    }
    return 0;
}

bool ReweightArgmaxPlugin::makeKernelParams(Dims const& input, ReweightArgmaxParams& p) const noexcept
{
    int64_t const classes = static_cast<int64_t>(mAttributes.weights.size());
    if (input.nbDims != 4 || input.d[1] != classes || input.d[0] < 1 || input.d[2] < 1 || input.d[3] < 1)
    {
        logError([classes] { return "logits must be N x " + std::to_string(classes) + " x H x W"; });
        return false;
    }
    if (SizeLimit const* limit = exceededInputLimit(input.d[0], classes, input.d[2], input.d[3]))
    {
        logError([&] { return inputBeyondLimit(*limit, input.d[0], classes, input.d[2], input.d[3]); });
        return false;
    }
    // within the limits every extent fits an int
    bool const valid = makeReweightArgmaxParams(static_cast<int>(input.d[0]), static_cast<int>(classes),
        static_cast<int>(input.d[2]), static_cast<int>(input.d[3]), mAttributes.outHeight, mAttributes.outWidth,
        mAttributes.weights.data(), mAttributes.alignCorners != 0, mAttributes.mode, p);
    if (!valid)
    {
        logError("the kernel's parameters could not be made from the attributes and the input shape");
    }
    return valid;
}

int32_t ReweightArgmaxPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (!expectedTensorCounts(nbInputs, nbOutputs))
    {
        return -1;
    }
    return makeKernelParams(in[0].dims, mParams) ? 0 : -1;
}

int32_t ReweightArgmaxPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    int const status = launchReweightArgmax(inputs[0], inputDesc[0].type == DataType::kHALF, outputs[0],
        mAttributes.confidence ? outputs[1] : nullptr, mAttributes.pack4 ? kLabelsPacked4 : kLabelsInt32, mParams,
        stream);
    if (status != 0)
    {
        logError([status] {
            return std::string("kernel launch failed: ") + cudaGetErrorName(static_cast<cudaError_t>(status));
        });
        return -1;
    }
    return 0;
}

IPluginV3* ReweightArgmaxPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone(); // no per-context resources: the weights travel in the kernel's parameters
}

PluginFieldCollection const* ReweightArgmaxPlugin::getFieldsToSerialize() noexcept
{
    return &mFieldCollection;
}

// --- creator --------------------------------------------------------------------------------------

ReweightArgmaxPluginCreator::ReweightArgmaxPluginCreator()
{
    mFieldNames = {
        PluginField(kWEIGHTS, nullptr, PluginFieldType::kFLOAT32, 0),
        PluginField(kOUT_HEIGHT, nullptr, PluginFieldType::kINT32, 1),
        PluginField(kOUT_WIDTH, nullptr, PluginFieldType::kINT32, 1),
        PluginField(kALIGN_CORNERS, nullptr, PluginFieldType::kINT32, 1),
        PluginField(kPACK4, nullptr, PluginFieldType::kINT32, 1),
        PluginField(kMODE, nullptr, PluginFieldType::kINT32, 1),
        PluginField(kCONFIDENCE, nullptr, PluginFieldType::kINT32, 1),
    };
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* ReweightArgmaxPluginCreator::getPluginName() const noexcept
{
    return kREWEIGHT_ARGMAX_NAME;
}

char const* ReweightArgmaxPluginCreator::getPluginVersion() const noexcept
{
    return kREWEIGHT_ARGMAX_VERSION;
}

char const* ReweightArgmaxPluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

PluginFieldCollection const* ReweightArgmaxPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* ReweightArgmaxPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        ReweightArgmaxAttributes a;
        bool seenWeights = false;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            if (f.name == nullptr)
            {
                logError("an attribute has no name");
                return nullptr;
            }
            std::string const field = f.name;
            if (field == "plugin_version" || field == "plugin_namespace")
            {
                // The ONNX node's attributes that select the creator. TensorRT's ONNX parser passes
                // only the fields getFieldNames() lists, but a caller that forwards every attribute
                // of the node passes these too: they are not the op's to interpret.
                continue;
            }
            if (f.data == nullptr || f.length < 1)
            {
                logError([&field] { return "attribute '" + field + "' has no value"; });
                return nullptr;
            }
            if (field == kWEIGHTS)
            {
                if (f.type != PluginFieldType::kFLOAT32)
                {
                    logError("attribute 'weights' must be FLOATS");
                    return nullptr;
                }
                auto const* values = static_cast<float const*>(f.data);
                a.weights.assign(values, values + f.length);
                seenWeights = true;
                continue;
            }
            int32_t* target = field == kOUT_HEIGHT ? &a.outHeight
                : field == kOUT_WIDTH              ? &a.outWidth
                : field == kALIGN_CORNERS          ? &a.alignCorners
                : field == kPACK4                  ? &a.pack4
                : field == kMODE                   ? &a.mode
                : field == kCONFIDENCE             ? &a.confidence
                                                   : nullptr;
            if (target == nullptr)
            {
                logError([&field] { return "unknown attribute '" + field + "'"; });
                return nullptr;
            }
            if (f.type != PluginFieldType::kINT32 || f.length != 1)
            {
                logError([&field] { return "attribute '" + field + "' must be one INT"; });
                return nullptr;
            }
            *target = *static_cast<int32_t const*>(f.data);
        }
        std::string const problem = seenWeights ? validateAttributes(a) : "attribute 'weights' is missing";
        if (!problem.empty())
        {
            logError(problem.c_str());
            return nullptr;
        }
        return new ReweightArgmaxPlugin(std::move(a));
    }
    catch (std::exception const& e)
    {
        logError([&e] { return std::string("createPlugin failed: ") + e.what(); });
        return nullptr;
    }
}

} // namespace dannet
