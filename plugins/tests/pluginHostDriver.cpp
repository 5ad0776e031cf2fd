// What the plugin test host does to the plugin library as TensorRT would (see pluginHostDriver.h).
#include "pluginHostDriver.h"

#include <cstring>

using namespace nvinfer1;

namespace host
{
namespace
{
using testSupport::DeviceBuffer;

//! Logits in their storage type on the device.
class DeviceLogits
{
public:
    explicit DeviceLogits(Logits const& logits)
    {
        if (logits.fp16)
        {
            mHalves.emplace(logits.halves);
        }
        else
        {
            mFloats.emplace(logits.values);
        }
    }

    void const* data() const
    {
        return mHalves ? static_cast<void const*>(mHalves->data()) : static_cast<void const*>(mFloats->data());
    }

private:
    std::optional<DeviceBuffer<uint16_t>> mHalves;
    std::optional<DeviceBuffer<float>> mFloats;
};

//! Whether a path names the same file as `libraryPath` (dladdr reports the path dlopen was given).
bool sameFile(std::string const& reported, std::string const& libraryPath)
{
    return !reported.empty() && reported == libraryPath;
}

//! Empty when what enqueue did to the emulated device (this thread's record, ``before`` it and
//! ``after``) is what TensorRT expects of it: at least one kernel launched, every one on ``stream``,
//! the stream TensorRT gave it, and no waiting for a stream or the device (enqueue returns with the
//! work queued, so that TensorRT overlaps it with other work and can capture it into a CUDA graph).
//! Else what was wrong. A GPU computes the same labels either way: only the record shows it.
std::string streamMisuse(
    cudaEmulation::StreamRecord const& before, cudaEmulation::StreamRecord const& after, cudaStream_t stream)
{
    size_t const launches = after.launches.size() - before.launches.size();
    size_t elsewhere = 0;
    for (size_t i = before.launches.size(); i < after.launches.size(); ++i)
    {
        elsewhere += after.launches[i] != stream ? 1 : 0;
    }
    if (launches == 0 || elsewhere != 0)
    {
        return std::to_string(launches) + " kernel launch(es), " + std::to_string(elsewhere)
            + " of them not on the stream enqueue was given";
    }
    int const streamWaits = after.streamSynchronizations - before.streamSynchronizations;
    int const deviceWaits = after.deviceSynchronizations - before.deviceSynchronizations;
    if (streamWaits != 0 || deviceWaits != 0)
    {
        return "it synchronised (" + std::to_string(streamWaits) + " stream, " + std::to_string(deviceWaits)
            + " device synchronisation(s)) instead of only launching";
    }
    return "";
}

} // namespace

bool Library::isLoaded(std::string const& path)
{
    void* const handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (handle != nullptr)
    {
        dlclose(handle);
    }
    return handle != nullptr;
}

DynamicBuild::DynamicBuild(std::string const& path)
    : mLibrary(path)
{
    auto const getCreators = mLibrary.symbol<GetCreatorsFunction>("getCreators");
    auto const setLoggerFinder = mLibrary.symbol<SetLoggerFinderFunction>("setLoggerFinder");
    if (getCreators == nullptr || setLoggerFinder == nullptr)
    {
        throw std::runtime_error(path + " does not export getCreators and setLoggerFinder");
    }
    setLoggerFinder(&loggerFinder());
    int32_t count = 0;
    IPluginCreatorInterface* const* const creators = getCreators(count);
    mCreator = count == 1 ? asCreatorV3One(creators[0]) : nullptr;
    if (mCreator == nullptr)
    {
        throw std::runtime_error(path + ": getCreators must return one IPluginCreatorV3One");
    }
}

std::string fileOf(void const* address)
{
    Dl_info info{};
    return dladdr(address, &info) != 0 && info.dli_fname != nullptr ? info.dli_fname : "";
}

IPluginCreatorV3One* registeredCreatorIn(std::string const& path)
{
    IPluginCreatorInterface* const creator = registry().getCreator(kNAME, kVERSION, kNAMESPACE);
    return creator != nullptr && sameFile(fileOf(creator), path) ? asCreatorV3One(creator) : nullptr;
}

Capabilities capabilitiesOf(IPluginV3& plugin)
{
    Capabilities c;
    IPluginCapability* const core = plugin.getCapabilityInterface(PluginCapabilityType::kCORE);
    IPluginCapability* const build = plugin.getCapabilityInterface(PluginCapabilityType::kBUILD);
    IPluginCapability* const runtime = plugin.getCapabilityInterface(PluginCapabilityType::kRUNTIME);
    c.core = isInterface(core, "PLUGIN_V3ONE_CORE") ? static_cast<IPluginV3OneCore*>(core) : nullptr;
    c.build = isInterface(build, "PLUGIN_V3ONE_BUILD") ? static_cast<IPluginV3OneBuild*>(build) : nullptr;
    c.runtime = isInterface(runtime, "PLUGIN_V3ONE_RUNTIME") ? static_cast<IPluginV3OneRuntime*>(runtime) : nullptr;
    return c;
}

bool sameAttributes(PluginFieldCollection const& fc, Attributes const& a)
{
    Fields expected;
    expected.floats("weights", a.weights).ints("out_height", {a.outHeight}).ints("out_width", {a.outWidth});
    expected.ints("align_corners", {a.alignCorners}).ints("pack4", {a.pack4}).ints("mode", {a.mode});
    expected.ints("confidence", {a.confidence});
    PluginFieldCollection const* const want = expected.collection();
    if (fc.nbFields != want->nbFields)
    {
        return false;
    }
    for (int32_t i = 0; i < fc.nbFields; ++i)
    {
        PluginField const& g = fc.fields[i];
        PluginField const& w = want->fields[i];
        bool const same = g.name != nullptr && std::strcmp(g.name, w.name) == 0 && g.type == w.type
            && g.length == w.length && std::memcmp(g.data, w.data, static_cast<size_t>(g.length) * 4) == 0;
        if (!same)
        {
            return false;
        }
    }
    return true;
}

PluginPtr create(IPluginCreatorV3One& creator, Attributes const& a, TensorRTPhase phase)
{
    Fields fields;
    addParserFields(fields, *creator.getFieldNames(), a);
    return PluginPtr(creator.createPlugin("reweight_argmax", fields.collection(), phase));
}

Attributes dannetAttributes(
    int32_t outHeight, int32_t outWidth, int32_t alignCorners, int32_t pack4, int32_t mode, int32_t confidence)
{
    std::vector<float> weights;
    for (int c = 0; c < 19; ++c)
    {
        weights.push_back(0.75f + 0.03125f * static_cast<float>((c * 7) % 19));
    }
    return Attributes{weights, outHeight, outWidth, alignCorners, pack4, mode, confidence};
}

Dims dims(std::vector<int64_t> const& extents)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(extents.size());
    for (size_t i = 0; i < extents.size(); ++i)
    {
        d.d[i] = extents[i];
    }
    return d;
}

PluginTensorDesc tensor(Dims const& extents, DataType type, TensorFormat format)
{
    PluginTensorDesc desc{};
    desc.dims = extents;
    desc.type = type;
    desc.format = format;
    desc.scale = -1.0f;
    return desc;
}

DynamicPluginTensorDesc buildTensor(
    Dims const& extents, DataType type, Dims const& min, Dims const& max, Dims const& opt)
{
    DynamicPluginTensorDesc desc{};
    desc.desc = tensor(extents, type);
    desc.min = min;
    desc.max = max;
    desc.opt = opt;
    return desc;
}

DynamicPluginTensorDesc buildTensor(Dims const& extents, DataType type)
{
    return buildTensor(extents, type, extents, extents, extents);
}

std::string phaseName(TensorRTPhase phase)
{
    return phase == TensorRTPhase::kBUILD ? "kBUILD" : "kRUNTIME";
}

RunDescs runDescs(Attributes const& a, Shape const& shape, bool fp16)
{
    PluginTensorDesc const output = tensor(dims({shape.batch, a.outHeight, a.outputWidth()}), DataType::kINT32);
    return RunDescs{tensor(dims({shape.batch, shape.channels, shape.height, shape.width}),
                        fp16 ? DataType::kHALF : DataType::kFLOAT),
        std::vector<PluginTensorDesc>(a.confidence != 0 ? 2 : 1, output)};
}

std::optional<Outputs> enqueue(
    IPluginV3OneRuntime& runtime, Attributes const& a, Shape const& shape, Logits const& logits)
{
    RunDescs const descs = runDescs(a, shape, logits.fp16);
    DeviceLogits const input(logits);
    size_t const elements = static_cast<size_t>(shape.batch) * a.outHeight * a.outputWidth();
    DeviceBuffer<uint32_t> labels(elements);
    std::optional<DeviceBuffer<uint32_t>> confidence;
    if (a.confidence != 0)
    {
        confidence.emplace(elements);
    }
    cudaStream_t stream = nullptr;
    cudaStreamCreate(&stream);
    void const* inputs[] = {input.data()};
    void* outputs[] = {labels.data(), confidence ? confidence->data() : nullptr};
    cudaEmulation::StreamRecord const before = cudaEmulation::streamRecord();
    int32_t const status = runtime.enqueue(&descs.in, descs.out.data(), inputs, outputs, nullptr, stream);
    std::string const misuse = streamMisuse(before, cudaEmulation::streamRecord(), stream);
    check(misuse.empty(), "enqueue (" + describe(a, shape, logits.fp16) + "): " + misuse);
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
    if (status != 0)
    {
        check(false, "enqueue failed");
        return std::nullopt;
    }
    return Outputs{labels.download(), confidence ? confidence->download() : std::vector<uint32_t>{}};
}

std::optional<Outputs> run(IPluginV3OneRuntime& runtime, Attributes const& a, Shape const& shape, Logits const& logits)
{
    RunDescs const descs = runDescs(a, shape, logits.fp16);
    if (runtime.onShapeChange(&descs.in, 1, descs.out.data(), descs.nbOutputs()) != 0)
    {
        check(false, "onShapeChange refused a valid shape");
        return std::nullopt;
    }
    return enqueue(runtime, a, shape, logits);
}

std::string mismatchWithReference(
    std::optional<Outputs> const& got, Attributes const& a, Shape const& shape, Logits const& logits)
{
    return got ? compareWithReference(*got, a, shape, logits) : "enqueue failed";
}

std::string describe(Attributes const& a, Shape const& s, bool fp16)
{
    return std::string(fp16 ? "fp16" : "fp32") + " " + std::to_string(s.batch) + "x" + std::to_string(s.channels) + "x"
        + std::to_string(s.height) + "x" + std::to_string(s.width) + " -> " + std::to_string(a.outHeight) + "x"
        + std::to_string(a.outWidth) + (a.pack4 != 0 ? " pack4" : " int32") + " mode " + std::to_string(a.mode)
        + " align_corners " + std::to_string(a.alignCorners) + (a.confidence != 0 ? " with confidence" : "");
}

void checkRun(IPluginV3OneRuntime& runtime, Attributes const& a, Shape const& shape, bool fp16, uint32_t seed)
{
    Logits const logits = randomLogits(shape, fp16, seed);
    std::string const mismatch = mismatchWithReference(run(runtime, a, shape, logits), a, shape, logits);
    check(mismatch.empty(), "outputs == host reference for " + describe(a, shape, fp16) + ": " + mismatch);
}

std::vector<std::string> errorsOf(std::function<void()> const& operation)
{
    CapturingLogger logger;
    CallerLogger const caller(logger);
    operation();
    return logger.errors();
}

bool anyContains(std::vector<std::string> const& messages, std::string const& fragment)
{
    return anyContainsAll(messages, {fragment});
}

bool anyContainsAll(std::vector<std::string> const& messages, std::vector<std::string> const& fragments)
{
    for (std::string const& m : messages)
    {
        bool all = true;
        for (std::string const& fragment : fragments)
        {
            all = all && m.find(fragment) != std::string::npos;
        }
        if (all)
        {
            return true;
        }
    }
    return false;
}

} // namespace host
