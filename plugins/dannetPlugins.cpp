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
} // namespace

extern "C" void setLoggerFinder(ILoggerFinder* finder)
{
    dannet::setPluginLogger(finder != nullptr ? finder->findLogger() : nullptr);
}

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = static_cast<int32_t>(sizeof(gCreators) / sizeof(gCreators[0]));
    return gCreators;
}

#if defined(DANNET_STATIC_REGISTRATION)
namespace
{
//! Registers every creator with TensorRT's global registry when the library is loaded (under the
//! creators' own namespace, which REGISTER_TENSORRT_PLUGIN's empty namespace would not match).
struct StaticRegistration
{
    StaticRegistration()
    {
        dannet::setPluginLogger(getLogger());
        for (IPluginCreatorInterface* creator : gCreators)
        {
            getPluginRegistry()->registerCreator(*creator, dannet::kPLUGIN_NAMESPACE);
        }
    }
} const gStaticRegistration;
} // namespace
#endif
