/*
 * The plugin library loaded, logging and registered as TensorRT and applications do it: the logger
 * finder asked per message and per calling thread, the entry points and TensorRT's loadLibrary, dlopen
 * twice / dlclose / dlopen, the self-registering build with getPluginRegistry()/getLogger() from the
 * host, and both builds in one process. Run by pluginHostTest.cpp's main.
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
    build.library().symbol<SetLoggerFinder>("setLoggerFinder")(&finder);
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

void libraryEntryPoints(Paths const& paths)
{
    int32_t const registered = registry().size();
    DynamicBuild build(paths.dynamicBuild);
    check(registry().size() == registered, "the getCreators build does not register itself when loaded");
    IPluginCreatorV3One& creator = build.creator();
    check(std::strcmp(creator.getPluginName(), kNAME) == 0, "creator name ReweightArgmax");
    check(std::strcmp(creator.getPluginVersion(), kVERSION) == 0, "creator version 1");
    check(std::strcmp(creator.getPluginNamespace(), kNAMESPACE) == 0, "creator namespace dannet");

    // trt.get_plugin_registry().load_library(): found by name, version and namespace afterwards
    IPluginRegistry::PluginLibraryHandle const handle = registry().loadLibrary(paths.dynamicBuild.c_str());
    check(handle != nullptr, "IPluginRegistry::loadLibrary accepts the library");
    IPluginCreatorInterface* const found = registry().getCreator(kNAME, kVERSION, kNAMESPACE);
    check(found != nullptr && asCreatorV3One(found) == &creator, "getCreator(ReweightArgmax, 1, dannet)");
    check(registry().getCreator(kNAME, "2", kNAMESPACE) == nullptr, "no version 2");
    check(registry().getCreator(kNAME, kVERSION, "") == nullptr, "not in the empty namespace");
    check(registry().loadLibrary(paths.dynamicBuild.c_str()) == nullptr,
        "loading it a second time through the registry is refused (its creator is registered)");
    if (handle != nullptr)
    {
        registry().deregisterLibrary(handle);
    }
    check(registry().size() == registered, "deregisterLibrary removes its creator");
}

//! dlopen twice (one mapping), dlclose both, dlopen again: a fresh library that works.
void loadingTwice(Paths const& paths)
{
    auto first = std::make_unique<DynamicBuild>(paths.dynamicBuild);
    auto second = std::make_unique<DynamicBuild>(paths.dynamicBuild);
    check(first->library().handle() == second->library().handle(), "the second dlopen returns the same library");
    check(&first->creator() == &second->creator(), "and the same creator");
    second.reset();
    check(create(first->creator(), dannetAttributes(8, 8, 1, 0, 0), TensorRTPhase::kBUILD) != nullptr,
        "one dlclose of two leaves the library usable");
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
    {
        Library const twice(paths.staticBuild);
        check(registry().size() == registered + 1, "a second dlopen registers nothing more");
    }
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
    check(registry().getCreator(kNAME, kVERSION, kNAMESPACE) == nullptr,
        "after dlclose the registry holds no creator of the unloaded library");
    check(registry().size() == registered, "the registry is as it was");

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

//! Both builds in one process: whichever registers second is refused, nothing crashes, and
//! unloading the refused one leaves the other's registration alone.
void bothBuildsInOneProcess(Paths const& paths)
{
    int32_t const registered = registry().size();
    CapturingLogger logger;
    setGlobalLogger(&logger);
    {
        Library const selfRegistering(paths.staticBuild);
        check(registry().loadLibrary(paths.dynamicBuild.c_str()) == nullptr,
            "with the self-registering build loaded, loadLibrary of the other build is refused");
        check(registeredCreatorIn(paths.staticBuild) != nullptr, "the first registration stands");
    }
    IPluginRegistry::PluginLibraryHandle const handle = registry().loadLibrary(paths.dynamicBuild.c_str());
    check(handle != nullptr, "once it is unloaded, loadLibrary succeeds");
    {
        Library const selfRegistering(paths.staticBuild); // its registration is refused
        check(registry().size() == registered + 1, "the self-registering build loaded second adds nothing");
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
        {"library entry points", libraryEntryPoints},
        {"loading twice", loadingTwice},
        {"static registration", staticRegistration},
        {"both builds in one process", bothBuildsInOneProcess},
    };
}

} // namespace host
