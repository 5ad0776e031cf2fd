/*
 * The library's entry points. Two ways in, two builds of the same sources:
 *  - libdannet_trt_plugins.so exports getCreators/setLoggerFinder, the interface of
 *    trt.get_plugin_registry().load_library() and trtexec --dynamicPlugins (TensorRT registers the
 *    creators itself, so this build must not also register them while loading);
 *  - libdannet_trt_plugins_static.so (DANNET_STATIC_REGISTRATION) registers its creators when it
 *    is loaded: ctypes.CDLL, trtexec --staticPlugins, DeepStream custom-lib-path.
 */
#include "reweightArgmax/reweightArgmaxPlugin.h"

using namespace nvinfer1;

namespace
{
dannet::ReweightArgmaxPluginCreator gReweightArgmaxCreator;
IPluginCreatorInterface* const gCreators[] = {&gReweightArgmaxCreator};
constexpr int32_t kNB_CREATORS = static_cast<int32_t>(sizeof(gCreators) / sizeof(gCreators[0]));
} // namespace

extern "C" void setLoggerFinder(ILoggerFinder* finder)
{
    dannet::setPluginLoggerFinder(finder);
}

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = kNB_CREATORS;
    return gCreators;
}

#if defined(DANNET_STATIC_REGISTRATION)
namespace
{
//! No loader hands this build a finder: it logs through libnvinfer's global logger, looked up for
//! every message like a finder's (the application may replace that logger at any time).
class GlobalLoggerFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return getLogger();
    }
} gGlobalLoggerFinder;

//! Registers every creator with TensorRT's global registry when the library is loaded (under the
//! creators' own namespace, which REGISTER_TENSORRT_PLUGIN's empty namespace would not match), and
//! deregisters them when it is unloaded: after dlclose the registry must not point into unmapped code.
class StaticRegistration
{
public:
    StaticRegistration()
    {
        dannet::setPluginLoggerFinder(&gGlobalLoggerFinder);
        for (int32_t i = 0; i < kNB_CREATORS; ++i)
        {
            mRegistered[i] = getPluginRegistry()->registerCreator(*gCreators[i], dannet::kPLUGIN_NAMESPACE);
        }
    }

    ~StaticRegistration()
    {
        for (int32_t i = 0; i < kNB_CREATORS; ++i)
        {
            if (mRegistered[i]) // a creator refused as a duplicate is someone else's registration
            {
                getPluginRegistry()->deregisterCreator(*gCreators[i]);
            }
        }
    }

    StaticRegistration(StaticRegistration const&) = delete;
    StaticRegistration& operator=(StaticRegistration const&) = delete;

private:
    bool mRegistered[kNB_CREATORS]{};
} const gStaticRegistration;
} // namespace
#endif
