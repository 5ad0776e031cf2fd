# The ReweightArgmax kernels and launcher (reweightArgmaxKernel.cu/.cuh), compiled unchanged by the
# host C++ compiler against the CPU emulation of CUDA (cudaEmulation/) and run under
# AddressSanitizer + UndefinedBehaviorSanitizer against the host reference (emulatedKernelTest.cpp);
# the evidence that this test notices broken kernels (emulatedKernelMutants.cmake); and the
# emulation's own check that every barrier is uniform (cudaEmulationTest.cpp).
#
# For other tests (e.g. a plugin test host) this file provides:
#   dannet_cuda_emulation                 INTERFACE: cudaEmulation/ first on the include path, the
#                                         sanitizer flags, threads
#   dannet_reweight_argmax_kernel_emulated STATIC: the kernels + launchReweightArgmax, emulated
include(CheckCXXSourceCompiles)

set(DANNET_EMULATION_DIR ${CMAKE_CURRENT_SOURCE_DIR}/cudaEmulation)
set(DANNET_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=address,undefined -fno-sanitize-recover=all")
set(CMAKE_REQUIRED_LINK_OPTIONS -fsanitize=address,undefined)
check_cxx_source_compiles("int main() { return 0; }" DANNET_HAVE_SANITIZERS)
unset(CMAKE_REQUIRED_FLAGS)
unset(CMAKE_REQUIRED_LINK_OPTIONS)
if(NOT DANNET_HAVE_SANITIZERS)
  message(STATUS "DANNet Edge: the compiler cannot build with ASan/UBSan: emulated kernel tests run without them")
  set(DANNET_SANITIZERS "")
endif()
find_package(Threads REQUIRED)

add_library(dannet_cuda_emulation INTERFACE)
target_include_directories(dannet_cuda_emulation BEFORE INTERFACE ${DANNET_EMULATION_DIR})
target_compile_options(dannet_cuda_emulation INTERFACE ${DANNET_SANITIZERS})
target_link_options(dannet_cuda_emulation INTERFACE ${DANNET_SANITIZERS})
target_link_libraries(dannet_cuda_emulation INTERFACE Threads::Threads)

# The emulation's own rules: a barrier that not every live thread reaches aborts.
add_executable(cudaEmulationTest ${CMAKE_CURRENT_SOURCE_DIR}/cudaEmulationTest.cpp)
target_link_libraries(cudaEmulationTest PRIVATE dannet_cuda_emulation)
add_test(NAME reweightArgmax.cudaEmulation COMMAND cudaEmulationTest)
set_tests_properties(reweightArgmax.cudaEmulation PROPERTIES TIMEOUT 60)

# In this directory (source properties are per directory: plugins/ still gives the .cu to nvcc)
# the .cu is C++ for the host compiler, and CUDA code for the emulation: DANNET_CUDA_EMULATION
# makes the .cuh include the emulation's cuda_runtime.h, as nvcc includes CUDA's implicitly.
set_source_files_properties(${RA}/reweightArgmaxKernel.cu PROPERTIES
  LANGUAGE CXX COMPILE_OPTIONS -xc++ COMPILE_DEFINITIONS DANNET_CUDA_EMULATION)
add_library(dannet_reweight_argmax_kernel_emulated STATIC ${RA}/reweightArgmaxKernel.cu)
target_include_directories(dannet_reweight_argmax_kernel_emulated PUBLIC ${RA})
target_link_libraries(dannet_reweight_argmax_kernel_emulated PUBLIC dannet_cuda_emulation)

# The test's own code as an object library, so that the mutation test links it with mutated kernels.
add_library(emulatedKernelTestObject OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/emulatedKernelTest.cpp)
target_link_libraries(emulatedKernelTestObject PUBLIC dannet_cuda_emulation)
target_include_directories(emulatedKernelTestObject PRIVATE ${RA})
add_executable(emulatedKernelTest $<TARGET_OBJECTS:emulatedKernelTestObject>)
target_link_libraries(emulatedKernelTest PRIVATE dannet_reweight_argmax_kernel_emulated)
add_test(NAME reweightArgmax.emulatedKernel COMMAND emulatedKernelTest)
set_tests_properties(reweightArgmax.emulatedKernel PROPERTIES TIMEOUT 120)

# Mutants of a copy of the kernel sources, each compiled with the flags above and linked with the
# test's object: each must make the test fail. One ctest test per mutant (named from the script's
# mutant() calls), so that `ctest -j` runs them side by side.
# (-O0: a mutant compiles in half the time and most fail in their first launch.)
set(DANNET_MUTANTS_SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/emulatedKernelMutants.cmake)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${DANNET_MUTANTS_SCRIPT})
file(STRINGS ${DANNET_MUTANTS_SCRIPT} DANNET_MUTANT_CALLS REGEX "^mutant\\([A-Za-z0-9]+ ")
string(REPLACE ";" "|" MUTANT_FLAGS "${DANNET_SANITIZERS};-std=c++17;-O0;-DDANNET_CUDA_EMULATION")
foreach(call IN LISTS DANNET_MUTANT_CALLS)
  string(REGEX REPLACE "^mutant\\(([A-Za-z0-9]+) .*" "\\1" name "${call}")
  add_test(NAME reweightArgmax.mutant.${name}
    COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DFLAGS=${MUTANT_FLAGS} -DSANITIZERS=${DANNET_HAVE_SANITIZERS}
      -DTEST_OBJECT=$<TARGET_OBJECTS:emulatedKernelTestObject> -DKERNEL_DIR=${RA}
      -DEMULATION_DIR=${DANNET_EMULATION_DIR} -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/mutants -DMUTANT=${name}
      -P ${DANNET_MUTANTS_SCRIPT})
  set_tests_properties(reweightArgmax.mutant.${name} PROPERTIES TIMEOUT 90)
endforeach()
# every call of the command (CMake's names are case-insensitive), however written, must be one the loop ran
file(STRINGS ${DANNET_MUTANTS_SCRIPT} DANNET_MUTANT_LINES REGEX "^[ \t]*[Mm][Uu][Tt][Aa][Nn][Tt][ \t]*\\(")
if(NOT DANNET_MUTANT_CALLS OR NOT DANNET_MUTANT_LINES STREQUAL DANNET_MUTANT_CALLS)
  message(FATAL_ERROR "DANNet Edge: ${DANNET_MUTANTS_SCRIPT}: write each call as `mutant(<name> <file>` on one line")
endif()
message(STATUS "DANNet Edge: building the ReweightArgmax kernel on the CPU emulation of CUDA (sanitizers: ${DANNET_HAVE_SANITIZERS})")
