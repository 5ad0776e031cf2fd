# The TensorRT plugin library driven through TensorRT's IPluginV3 lifecycle by a test host that
# plays TensorRT (pluginHostMain.cpp and the pluginHost*Test.cpp it runs), the plugin's kernel
# executed by the CPU emulation of CUDA (cudaEmulation/, from emulatedKernel.cmake). Needs no GPU,
# no CUDA toolkit and no TensorRT.
# Uses from emulatedKernel.cmake (included first): the dannet_cuda_emulation target and, in this
# directory, the .cu's source properties that make it emulated C++ (LANGUAGE CXX, -xc++,
# DANNET_CUDA_EMULATION).
#
# One host (executable + the two builds of the plugin library as modules) per TensorRT header set:
#   - always the stand-in declarations in tensorrtStandin/ (what CI has): ctest reweightArgmax.pluginHost.standin;
#   - the real headers of TensorRT_ROOT, and of every directory in DANNET_TRT_HEADERS (default: the
#     ~/.cache/trt-headers/*/include that exist; -DDANNET_TRT_HEADERS= for none):
#     ctest reweightArgmax.pluginHost.trt<major.minor.patch>.
# Each compiles the plugin sources with -Wall -Wextra -Werror against its headers, so a stand-in
# signature that disagrees with the real headers fails to compile (`override`), and with the
# shipped library's options (DANNET_PLUGIN_LIBRARY_OPTIONS, ../CMakeLists.txt), so that what the
# host observes (dlclose unloads the library) holds for what ships. The host executable exports its
# symbols (ENABLE_EXPORTS), so the modules' references to the emulation's device-memory registry
# bind to the executable's: one per process.

set(PLUGIN_HOST_DIR ${CMAKE_CURRENT_LIST_DIR})
set(PLUGIN_HOST_WARNINGS -Wall -Wextra -Werror)

# The kernel and its launcher, emulated, position-independent for the modules (header-set independent).
add_library(pluginHostKernel OBJECT ${RA}/reweightArgmaxKernel.cu)
set_target_properties(pluginHostKernel PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(pluginHostKernel PRIVATE ${RA})
target_compile_options(pluginHostKernel PRIVATE ${DANNET_PLUGIN_LIBRARY_OPTIONS})
target_link_libraries(pluginHostKernel PUBLIC dannet_cuda_emulation)

# The header sets: tag;include directory pairs.
set(PLUGIN_HOST_SETS standin ${PLUGIN_HOST_DIR}/tensorrtStandin)
if(NOT DEFINED DANNET_TRT_HEADERS)
  file(GLOB DANNET_TRT_HEADERS LIST_DIRECTORIES true "$ENV{HOME}/.cache/trt-headers/*/include")
endif()
set(_pluginHostCandidates ${DANNET_TRT_HEADERS})
if(DANNET_HAVE_TENSORRT)
  list(PREPEND _pluginHostCandidates ${TensorRT_INCLUDE_DIR})
endif()
set(_pluginHostVersions "")
foreach(dir IN LISTS _pluginHostCandidates)
  set(versionHeader ${dir}/NvInferVersion.h)
  if(NOT EXISTS ${versionHeader} OR NOT EXISTS ${dir}/NvInferRuntime.h)
    message(WARNING "DANNet Edge: ${dir} has no NvInferVersion.h/NvInferRuntime.h: no plugin test host for it")
    continue()
  endif()
  file(STRINGS ${versionHeader} versionLines
    REGEX "#define (NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? +[0-9]+")
  set(version "")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "_${part}(_ENTERPRISE)? +([0-9]+)" _ "${versionLines}")
    list(APPEND version ${CMAKE_MATCH_2})
  endforeach()
  list(JOIN version "." version)
  if(version IN_LIST _pluginHostVersions)
    continue() # the same version twice (e.g. TensorRT_ROOT is one of the cached header sets)
  endif()
  list(APPEND _pluginHostVersions ${version})
  list(APPEND PLUGIN_HOST_SETS trt${version} ${dir})
endforeach()

# One host for the headers in `include` (`tag` names the targets and the ctest).
function(dannet_add_plugin_host tag include)
  string(REPLACE "." "_" id ${tag})
  set(headers ${include})
  if(tag STREQUAL "standin")
    set(system "") # our own headers: warnings in them count
  else()
    set(system SYSTEM) # TensorRT's: its warnings are not ours
  endif()

  # the plugin as TensorRT's loader sees it, its sources compiled against these headers
  add_library(pluginHostPlugin_${id} OBJECT ${RA}/reweightArgmaxPlugin.cpp)
  add_library(pluginHostDynamic_${id} MODULE ${PLUGIN_HOST_DIR}/../dannetPlugins.cpp)
  add_library(pluginHostStatic_${id} MODULE ${PLUGIN_HOST_DIR}/../dannetPlugins.cpp)
  target_compile_definitions(pluginHostStatic_${id} PRIVATE DANNET_STATIC_REGISTRATION)
  foreach(target pluginHostPlugin_${id} pluginHostDynamic_${id} pluginHostStatic_${id})
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_include_directories(${target} ${system} PRIVATE ${headers})
    target_include_directories(${target} PRIVATE ${RA} ${PLUGIN_HOST_DIR}/..)
    target_compile_options(${target} PRIVATE ${PLUGIN_HOST_WARNINGS} ${DANNET_PLUGIN_LIBRARY_OPTIONS})
    target_link_libraries(${target} PRIVATE dannet_cuda_emulation)
  endforeach()
  foreach(target pluginHostDynamic_${id} pluginHostStatic_${id})
    # getPluginRegistry()/getLogger() stay undefined in the self-registering build: the host defines them
    target_link_libraries(${target} PRIVATE pluginHostPlugin_${id} pluginHostKernel)
  endforeach()

  add_executable(pluginHost_${id} ${PLUGIN_HOST_DIR}/pluginHostMain.cpp ${PLUGIN_HOST_DIR}/pluginHostLoadingTest.cpp
    ${PLUGIN_HOST_DIR}/pluginHostCreationTest.cpp ${PLUGIN_HOST_DIR}/pluginHostBuildTest.cpp
    ${PLUGIN_HOST_DIR}/pluginHostRuntimeTest.cpp ${PLUGIN_HOST_DIR}/pluginHostDriver.cpp
    ${PLUGIN_HOST_DIR}/pluginHost.cpp ${PLUGIN_HOST_DIR}/pluginHostMemory.cpp)
  set_target_properties(pluginHost_${id} PROPERTIES ENABLE_EXPORTS ON)
  target_include_directories(pluginHost_${id} ${system} PRIVATE ${headers})
  target_include_directories(pluginHost_${id} PRIVATE ${RA} ${PLUGIN_HOST_DIR})
  target_compile_options(pluginHost_${id} PRIVATE ${PLUGIN_HOST_WARNINGS})
  target_link_libraries(pluginHost_${id} PRIVATE dannet_cuda_emulation ${CMAKE_DL_LIBS})
  add_dependencies(pluginHost_${id} pluginHostDynamic_${id} pluginHostStatic_${id})

  add_test(NAME reweightArgmax.pluginHost.${tag}
    COMMAND pluginHost_${id} --dynamic $<TARGET_FILE:pluginHostDynamic_${id}>
      --static $<TARGET_FILE:pluginHostStatic_${id}>)
  # A toolchain that links libstdc++ statically into shared objects (GCC 13 in /opt/gcc on the GPU
  # machine we test on) puts a copy of it in each module, and that copy mallocs its emergency
  # exception pool (72 KiB) when the module loads and never frees it: LeakSanitizer reports it once
  # per load/unload cycle. GCC 13's libstdc++ can be told to allocate no pool; leaks of our own stay visible.
  set_tests_properties(reweightArgmax.pluginHost.${tag} PROPERTIES TIMEOUT 60
    ENVIRONMENT "GLIBCXX_TUNABLES=glibcxx.eh_pool.obj_count=0")
  message(STATUS "DANNet Edge: plugin test host reweightArgmax.pluginHost.${tag} (${include})")
endfunction()

set(_real10_3 "")
while(PLUGIN_HOST_SETS)
  list(POP_FRONT PLUGIN_HOST_SETS tag include)
  dannet_add_plugin_host(${tag} ${include})
  if(tag MATCHES "^trt10\\.3\\.")
    list(APPEND _real10_3 ${include})
  endif()
endwhile()

# The stand-in declares TensorRT 10.3's API, nothing newer (checked against real 10.3 headers too, if any).
string(REPLACE ";" "|" _real10_3 "${_real10_3}")
add_test(NAME reweightArgmax.tensorrtStandinApi
  COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DEMULATION_DIR=${DANNET_EMULATION_DIR}
    -DSTANDIN_DIR=${PLUGIN_HOST_DIR}/tensorrtStandin -DREAL_10_3_DIRS=${_real10_3}
    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/tensorrtStandinApi -P ${PLUGIN_HOST_DIR}/tensorrtStandinApi.cmake)
set_tests_properties(reweightArgmax.tensorrtStandinApi PROPERTIES TIMEOUT 60)
