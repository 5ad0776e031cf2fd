/*
 * The ReweightArgmax plugin library driven through TensorRT's IPluginV3 lifecycle by a host that
 * plays TensorRT (pluginHost.h, pluginHostDriver.h): loaded and registered, created from the ONNX
 * parser's fields, asked everything the builder asks, configured, run on changing shapes (its real
 * kernel, executed by the CPU emulation of CUDA), cloned, attached to contexts, serialised and
 * recreated, and destroyed; every answer is checked against the op specification
 * (reweightArgmax/README.md) and every label against the host reference. The tests, by stage:
 * pluginHostLoadingTest.cpp, pluginHostCreationTest.cpp, pluginHostBuildTest.cpp,
 * pluginHostRuntimeTest.cpp.
 *
 * usage: pluginHost --dynamic <getCreators build> --static <self-registering build>
 */
#include "pluginHostDriver.h"

#include <cstdio>
#include <exception>

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
            "pluginHost: expected --dynamic <libdannet_trt_plugins.so> --static <self-registering build>\n");
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

    std::vector<host::NamedTest> tests;
    for (auto const& stage : {host::loadingTests(), host::creationTests(), host::buildTests(), host::runtimeTests()})
    {
        tests.insert(tests.end(), stage.begin(), stage.end());
    }
    for (host::NamedTest const& test : tests)
    {
        int const before = testSupport::failedChecks();
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
        std::printf("[ %s ] %s\n", testSupport::failedChecks() == before ? " OK " : "FAIL", test.name);
    }
    for (std::string const& message : unexpected.errors())
    {
        host::check(false, "unexpected error logged: " + message);
    }
    int const failed = testSupport::failedChecks();
    std::printf("%s: %d failed check(s)\n", failed == 0 ? "PASSED" : "FAILED", failed);
    return failed == 0 ? 0 : 1;
}
