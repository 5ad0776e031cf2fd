/*
 * The plugin library loaded, logging and registered as TensorRT and applications do it: the logger
 * finder asked per message and per calling thread, errors reported when memory has run out, the
 * entry points and TensorRT's loadLibrary, a library unloaded and loaded again, the self-registering
 * build with getPluginRegistry()/getLogger() from the host, and both builds in one process. The
 * checks are of the plugin library; where one looks at the dynamic loader or at the registry (the
 * host's stand-in for TensorRT's), it says which behaviour of theirs the plugin relies on. Run by
 * pluginHostMain.cpp.
 */
#include "pluginHostDriver.h"

#include <cstring>
#include <thread>

using namespace nvinfer1;

namespace host
{
namespace
{

//! ILoggerFinder::findLogger() returns the logger of the engine calling now; it may be destroyed
//! once that engine is. The plugin must ask again for every message.
void loggerFollowsTheFinder(Paths const& paths)
{
    auto first = std::make_unique<CapturingLogger>();
    auto firstCaller = std::make_unique<CallerLogger>(*first);
    DynamicBuild const build(paths.dynamicBuild); // setLoggerFinder while the first engine calls
    Attributes bad = dannetAttributes(8, 8, 1, 0, 0);
    bad.mode = 7;
    check(create(build.creator(), bad, TensorRTPhase::kBUILD) == nullptr, "mode 7 is refused");
    check(anyContains(first->errors(), "'mode'"), "the error reaches the first engine's logger");
    firstCaller.reset();
    first.reset(); // that engine and its logger are gone

    CapturingLogger second;
    CallerLogger const secondCaller(second);
    check(create(build.creator(), bad, TensorRTPhase::kBUILD) == nullptr, "mode 7 is refused again");
    check(anyContains(second.errors(), "'mode'"), "the next error reaches the logger the finder returns now");
}

//! findLogger() is not noexcept, the plugin's methods are: a finder that throws must not take the
//! process down (the message goes to stderr instead).
void throwingLoggerFinder(Paths const& paths)
{
    class ThrowingFinder final : public ILoggerFinder
    {
    public:
        ILogger* findLogger() override
        {
            throw std::runtime_error("no logger on this thread");
        }
    } finder;
    DynamicBuild build(paths.dynamicBuild);
    build.library().symbol<SetLoggerFinderFunction>("setLoggerFinder")(&finder);
    Attributes bad = dannetAttributes(8, 8, 1, 0, 0);
    bad.outWidth = 0;
    check(create(build.creator(), bad, TensorRTPhase::kBUILD) == nullptr, "out_width 0 is refused");
}

//! Each thread's plugin calls log to the logger of the engine calling on that thread.
void loggerPerCallingThread(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    auto const refuseRepeatedly = [&](CapturingLogger& logger, Attributes bad) {
        CallerLogger const caller(logger);
        for (int i = 0; i < 50; ++i)
        {
            create(build.creator(), bad, TensorRTPhase::kBUILD);
        }
    };
    Attributes badMode = dannetAttributes(8, 8, 1, 0, 0);
    badMode.mode = 9;
    Attributes badHeight = dannetAttributes(-1, 8, 1, 0, 0);
    CapturingLogger loggerA;
    CapturingLogger loggerB;
    std::thread a(refuseRepeatedly, std::ref(loggerA), badMode);
    std::thread b(refuseRepeatedly, std::ref(loggerB), badHeight);
    a.join();
    b.join();
    std::vector<std::string> const errorsA = loggerA.errors();
    std::vector<std::string> const errorsB = loggerB.errors();
    check(errorsA.size() == 50 && !anyContains(errorsA, "'out_height'"), "thread A's engine got its 50 errors only");
    check(errorsB.size() == 50 && !anyContains(errorsB, "'mode'"), "thread B's engine got its 50 errors only");
}

//! Memory runs out while the plugin reports an error: its methods are noexcept, so composing the
//! message (which allocates) must not throw out of them. The call fails as it would have, and the
//! engine's logger still hears of it.
void outOfMemoryWhileReporting(Paths const& paths)
{
    DynamicBuild const build(paths.dynamicBuild);
    Attributes const a = dannetAttributes(8, 8, 1, 0, 0);
    PluginPtr const plugin = create(build.creator(), a, TensorRTPhase::kBUILD);
    Capabilities const caps = plugin != nullptr ? capabilitiesOf(*plugin) : Capabilities{};
    if (caps.build == nullptr)
    {
        check(false, "build capability");
        return;
    }
    Fields fields;
    Attributes bad = a;
    bad.mode = 4;
    addParserFields(fields, *build.creator().getFieldNames(), bad);
    DynamicPluginTensorDesc const sevenChannels = buildTensor(dims({-1, 7, -1, -1}), DataType::kFLOAT);
    DynamicPluginTensorDesc const out = buildTensor(dims({-1, 8, 8}), DataType::kINT32);
    DataType const twoInputs[2] = {DataType::kFLOAT, DataType::kFLOAT};
    DataType outputType = DataType::kBOOL;

    struct Case
    {
        char const* what;
        std::function<bool()> fails; //!< true when the call reports failure
    };
    IPluginCreatorV3One& creator = build.creator();
    std::vector<Case> const cases = {
        {"createPlugin with mode 4",
            [&] { return PluginPtr(creator.createPlugin("bad", fields.collection(), TensorRTPhase::kBUILD)) == nullptr; }},
        {"clone", [&] { return PluginPtr(plugin->clone()) == nullptr; }},
        {"configurePlugin with 7 channels",
            [&] { return caps.build->configurePlugin(&sevenChannels, 1, &out, 1) != 0; }},
        {"getOutputDataTypes of two inputs",
            [&] { return caps.build->getOutputDataTypes(&outputType, 1, twoInputs, 2) != 0; }},
    };
    for (Case const& c : cases)
    {
        bool failed = false;
        std::vector<std::string> const errors = errorsOf([&] {
            OutOfMemory const outOfMemory;
            failed = c.fails();
        });
        check(failed && errors.size() == 1, std::string(c.what) + " out of memory: fails, one error logged");
        check(anyContains(errors, "dannet::ReweightArgmax"), std::string(c.what) + ": the error names the plugin");
    }
}

void libraryEntryPoints(Paths const& paths)
{
    int32_t const registered = registry().size();
    DynamicBuild build(paths.dynamicBuild);
    check(registry().size() == registered, "the getCreators build does not register itself when loaded");
    IPluginCreatorV3One& creator = build.creator();
    check(std::strcmp(creator.getPluginName(), kNAME) == 0, "creator name ReweightArgmax");
    check(std::strcmp(creator.getPluginVersion(), kVERSION) == 0, "creator version 1");
    check(std::strcmp(creator.getPluginNamespace(), kNAMESPACE) == 0, "creator namespace dannet");

    // trt.get_plugin_registry().load_library(): then found by name, version and namespace
    IPluginRegistry::PluginLibraryHandle const handle = registry().loadLibrary(paths.dynamicBuild.c_str());
    check(handle != nullptr, "IPluginRegistry::loadLibrary accepts the library");
    IPluginCreatorInterface* const found = registry().getCreator(kNAME, kVERSION, kNAMESPACE);
    check(found != nullptr && asCreatorV3One(found) == &creator, "getCreator(ReweightArgmax, 1, dannet) finds it");
    if (handle != nullptr)
    {
        registry().deregisterLibrary(handle);
    }
}

//! Opened twice (a second load_library or ctypes.CDLL of the path) and closed twice, the library is
//! unmapped: no STB_GNU_UNIQUE symbol keeps it (DANNET_PLUGIN_LIBRARY_OPTIONS, ../CMakeLists.txt).
//! Opened again it starts afresh: it creates plugins that run, and logs through the finder it is given.
void loadingTwice(Paths const& paths)
{
    auto first = std::make_unique<DynamicBuild>(paths.dynamicBuild);
    auto second = std::make_unique<DynamicBuild>(paths.dynamicBuild);
    second.reset();
    first.reset();
    check(!Library::isLoaded(paths.dynamicBuild), "after the last dlclose the library is unmapped");

    DynamicBuild const again(paths.dynamicBuild);
    Attributes const a = dannetAttributes(20, 61, 1, 0, 0);
    PluginPtr const plugin = create(again.creator(), a, TensorRTPhase::kBUILD);
    IPluginV3OneRuntime* const runtime = plugin != nullptr ? capabilitiesOf(*plugin).runtime : nullptr;
    check(runtime != nullptr, "the reloaded library creates plugins");
    if (runtime != nullptr)
    {
        checkRun(*runtime, a, kShapeA, false, 41);
    }
    Attributes bad = a;
    bad.pack4 = 5;
    check(anyContains(errorsOf([&] { create(again.creator(), bad, TensorRTPhase::kBUILD); }), "'pack4'"),
        "the reloaded library logs through the finder it was given");
}

//! The self-registering build: registers with getPluginRegistry() when loaded, logs through
//! getLogger() (asked each time), and leaves the registry clean when unloaded.
void staticRegistration(Paths const& paths)
{
    int32_t const registered = registry().size();
    auto firstLogger = std::make_unique<CapturingLogger>();
    setGlobalLogger(firstLogger.get());
    auto library = std::make_unique<Library>(paths.staticBuild);
    IPluginCreatorV3One* creator = registeredCreatorIn(paths.staticBuild);
    check(creator != nullptr && registry().size() == registered + 1,
        "loading it registers its ReweightArgmax/1/dannet creator");
    Attributes bad = dannetAttributes(8, 8, 1, 0, 0);
    bad.alignCorners = 3;
    if (creator != nullptr)
    {
        create(*creator, bad, TensorRTPhase::kBUILD);
        check(anyContains(firstLogger->errors(), "'align_corners'"), "errors go to getLogger()'s logger");
        CapturingLogger secondLogger;
        setGlobalLogger(&secondLogger);
        firstLogger.reset(); // the application replaced its global logger
        create(*creator, bad, TensorRTPhase::kBUILD);
        check(anyContains(secondLogger.errors(), "'align_corners'"), "errors go to the logger getLogger() returns now");
        setGlobalLogger(nullptr);
    }

    library.reset();
    check(!Library::isLoaded(paths.staticBuild), "after dlclose the library is unmapped");
    check(registry().getCreator(kNAME, kVERSION, kNAMESPACE) == nullptr && registry().size() == registered,
        "after dlclose the registry holds no creator of the unloaded library");

    library = std::make_unique<Library>(paths.staticBuild); // loaded again: registered again
    creator = registeredCreatorIn(paths.staticBuild);
    check(creator != nullptr, "loaded again, it registers its new creator");
    if (creator != nullptr)
    {
        Attributes const a = dannetAttributes(12, 130, 1, 1, 1);
        PluginPtr const plugin = create(*creator, a, TensorRTPhase::kBUILD);
        IPluginV3OneRuntime* const runtime = plugin != nullptr ? capabilitiesOf(*plugin).runtime : nullptr;
        check(runtime != nullptr, "and it creates plugins");
        if (runtime != nullptr)
        {
            checkRun(*runtime, a, kShapeA, true, 51);
        }
    }
}

//! Both builds in one process, the getCreators one registered first: the self-registering one's
//! registration is refused, and unloading it must not take the other's creator out of the registry.
void bothBuildsInOneProcess(Paths const& paths)
{
    int32_t const registered = registry().size();
    CapturingLogger logger;
    setGlobalLogger(&logger);
    IPluginRegistry::PluginLibraryHandle const handle = registry().loadLibrary(paths.dynamicBuild.c_str());
    check(handle != nullptr, "loadLibrary of the getCreators build");
    {
        Library const selfRegistering(paths.staticBuild);
        // The registry refuses a second ReweightArgmax/1/dannet (as TensorRT's does): the plugin's
        // unload relies on having been told so.
        check(registry().size() == registered + 1, "the self-registering build loaded second is refused");
    }
    IPluginCreatorV3One* const creator = registeredCreatorIn(paths.dynamicBuild);
    check(creator != nullptr, "unloading the refused build leaves the registered creator in place");
    if (creator != nullptr)
    {
        PluginPtr const plugin = create(*creator, dannetAttributes(8, 8, 1, 0, 0), TensorRTPhase::kBUILD);
        check(plugin != nullptr, "and it still creates plugins");
    }
    if (handle != nullptr)
    {
        registry().deregisterLibrary(handle);
    }
    setGlobalLogger(nullptr);
}

} // namespace

std::vector<NamedTest> loadingTests()
{
    return {
        {"logger follows the finder", loggerFollowsTheFinder},
        {"logger finder that throws", throwingLoggerFinder},
        {"logger per calling thread", loggerPerCallingThread},
        {"out of memory while reporting an error", outOfMemoryWhileReporting},
        {"library entry points", libraryEntryPoints},
        {"loading twice", loadingTwice},
        {"static registration", staticRegistration},
        {"both builds in one process", bothBuildsInOneProcess},
    };
}

} // namespace host
