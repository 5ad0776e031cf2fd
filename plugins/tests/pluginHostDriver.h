/*
 * What the plugin test host does to the plugin library as TensorRT would: open it, create plugins
 * from fields, look at their capabilities, hand them tensor descriptors, run them on the (emulated)
 * device; and the tests' bookkeeping. The tests themselves, by stage: pluginHostLoadingTest.cpp
 * (loading, logging, registration), pluginHostCreationTest.cpp (creator and createPlugin),
 * pluginHostBuildTest.cpp (what the builder asks), pluginHostRuntimeTest.cpp (configure, enqueue,
 * clone, contexts, serialisation); pluginHostMain.cpp runs them.
 */
#pragma once

#include "pluginHost.h"
#include "pluginHostFields.h"
#include "pluginHostTensors.h"
#include "testSupport.h"

#include <dlfcn.h>

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace host
{

// --- bookkeeping -------------------------------------------------------------------------------------

using testSupport::check;

//! The two builds of the plugin library under test.
struct Paths
{
    std::string dynamicBuild; //!< getCreators/setLoggerFinder
    std::string staticBuild;  //!< registers itself when loaded
};

struct NamedTest
{
    char const* name;
    void (*run)(Paths const&);
};

std::vector<NamedTest> loadingTests();  //!< pluginHostLoadingTest.cpp
std::vector<NamedTest> creationTests(); //!< pluginHostCreationTest.cpp
std::vector<NamedTest> buildTests();    //!< pluginHostBuildTest.cpp
std::vector<NamedTest> runtimeTests();  //!< pluginHostRuntimeTest.cpp

constexpr char const* kNAME = "ReweightArgmax";
constexpr char const* kVERSION = "1";
constexpr char const* kNAMESPACE = "dannet";

// --- libraries ---------------------------------------------------------------------------------------

//! A plugin library opened with dlopen (RTLD_LOCAL, as TensorRT's loader and ctypes open them).
class Library
{
public:
    explicit Library(std::string path)
        : mPath(std::move(path))
        , mHandle(dlopen(mPath.c_str(), RTLD_LAZY | RTLD_LOCAL))
    {
        if (mHandle == nullptr)
        {
            throw std::runtime_error("dlopen " + mPath + ": " + dlerror());
        }
    }

    ~Library()
    {
        close();
    }

    Library(Library const&) = delete;
    Library& operator=(Library const&) = delete;

    void close()
    {
        if (mHandle != nullptr)
        {
            dlclose(mHandle);
            mHandle = nullptr;
        }
    }

    template <typename Function>
    Function symbol(char const* name) const
    {
        return reinterpret_cast<Function>(dlsym(mHandle, name));
    }

    //! Whether the file is mapped in this process now.
    static bool isLoaded(std::string const& path);

private:
    std::string mPath;
    void* mHandle;
};

//! The getCreators build as TensorRT's loader uses it: entry points found, logger finder given.
class DynamicBuild
{
public:
    explicit DynamicBuild(std::string const& path);

    nvinfer1::IPluginCreatorV3One& creator() const
    {
        return *mCreator;
    }

    Library& library()
    {
        return mLibrary;
    }

private:
    Library mLibrary;
    nvinfer1::IPluginCreatorV3One* mCreator;
};

//! The file that `address` belongs to, as the dynamic linker knows it ("" if none).
std::string fileOf(void const* address);

//! The registered ReweightArgmax creator if it lives in the library at `path`, checked before it is
//! touched: a creator that an unloaded library left in the registry points into unmapped memory.
nvinfer1::IPluginCreatorV3One* registeredCreatorIn(std::string const& path);

// --- plugins -----------------------------------------------------------------------------------------

using PluginPtr = std::unique_ptr<nvinfer1::IPluginV3>; // TensorRT destroys plugins with delete

struct Capabilities
{
    nvinfer1::IPluginV3OneCore* core{nullptr};
    nvinfer1::IPluginV3OneBuild* build{nullptr};
    nvinfer1::IPluginV3OneRuntime* runtime{nullptr};
};

//! The capability interfaces, cast only after their InterfaceInfo says what they are (as TensorRT does).
Capabilities capabilitiesOf(nvinfer1::IPluginV3& plugin);

//! createPlugin from the fields TensorRT's ONNX parser makes for a node with these attributes.
PluginPtr create(nvinfer1::IPluginCreatorV3One& creator, Attributes const& a, nvinfer1::TensorRTPhase phase);

//! Whether `fc` holds exactly these attributes, as the plugin's fields (in getFieldNames() order).
bool sameAttributes(nvinfer1::PluginFieldCollection const& fc, Attributes const& a);

//! DANNet-like attributes: 19 classes, weights about 1.
Attributes dannetAttributes(
    int32_t outHeight, int32_t outWidth, int32_t alignCorners, int32_t pack4, int32_t mode, int32_t confidence = 0);

std::string phaseName(nvinfer1::TensorRTPhase phase);

// --- tensors -----------------------------------------------------------------------------------------

nvinfer1::Dims dims(std::vector<int64_t> const& extents);

nvinfer1::PluginTensorDesc tensor(nvinfer1::Dims const& extents, nvinfer1::DataType type,
    nvinfer1::TensorFormat format = nvinfer1::TensorFormat::kLINEAR);

//! A tensor while building: `extents` may hold -1, in [min, max] with `opt` to tune for.
nvinfer1::DynamicPluginTensorDesc buildTensor(nvinfer1::Dims const& extents, nvinfer1::DataType type,
    nvinfer1::Dims const& min, nvinfer1::Dims const& max, nvinfer1::Dims const& opt);

//! A tensor whose shape is known when building.
nvinfer1::DynamicPluginTensorDesc buildTensor(nvinfer1::Dims const& extents, nvinfer1::DataType type);

//! The descriptors TensorRT passes for these logits and the outputs the attributes ask for (the
//! labels, and the confidence with the attribute confidence).
struct RunDescs
{
    nvinfer1::PluginTensorDesc in;
    std::vector<nvinfer1::PluginTensorDesc> out;

    int32_t nbOutputs() const
    {
        return static_cast<int32_t>(out.size());
    }
};

RunDescs runDescs(Attributes const& a, Shape const& shape, bool fp16);

// Shapes: A and B alternate; B is down-scaled (its window does not fit shared memory).
inline Shape const kShapeA{2, 19, 9, 17};
inline Shape const kShapeB{1, 19, 33, 150};

// --- running -----------------------------------------------------------------------------------------

//! enqueue on a stream of its own, then wait: the outputs' elements, or nothing if enqueue fails.
//! Checks that enqueue launched its kernel on that stream and did not synchronise (the CPU
//! emulation's record of the launches, cudaEmulation::streamRecord).
std::optional<Outputs> enqueue(
    nvinfer1::IPluginV3OneRuntime& runtime, Attributes const& a, Shape const& shape, Logits const& logits);

//! TensorRT running a context: onShapeChange with the concrete shapes, then enqueue.
std::optional<Outputs> run(
    nvinfer1::IPluginV3OneRuntime& runtime, Attributes const& a, Shape const& shape, Logits const& logits);

//! Empty when enqueue ran (``got``) and wrote what the host reference gives (compareWithReference).
std::string mismatchWithReference(
    std::optional<Outputs> const& got, Attributes const& a, Shape const& shape, Logits const& logits);

std::string describe(Attributes const& a, Shape const& s, bool fp16);

//! Runs the plugin on one input and checks its outputs against the host reference (compareWithReference).
void checkRun(
    nvinfer1::IPluginV3OneRuntime& runtime, Attributes const& a, Shape const& shape, bool fp16, uint32_t seed);

// --- logs --------------------------------------------------------------------------------------------

//! The errors an operation logged through the logger of the engine that called it.
std::vector<std::string> errorsOf(std::function<void()> const& operation);

bool anyContains(std::vector<std::string> const& messages, std::string const& fragment);

//! Whether one message holds every fragment.
bool anyContainsAll(std::vector<std::string> const& messages, std::vector<std::string> const& fragments);

} // namespace host
