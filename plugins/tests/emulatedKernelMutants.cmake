# The emulated kernel test has teeth: each mutant below is a copy of the kernel sources and of the
# CUDA emulation with one deliberate bug; compiled and linked with the test's own object, it must
# make the test fail (with the given message where a particular checker must catch it). The kernel
# mutants break the kernel; the emulator self-tests break the emulation, whose fp16 conversion the
# test must not take on trust either (the test's expectations come from a decoder of its own).
# Each mutation's original text must occur exactly once in its file, so that this script breaks
# loudly, instead of testing nothing, when a source changes under it.
#
# cmake -DCXX=<c++ compiler> -DFLAGS=<compile and link flags, |-separated> -DTEST_OBJECT=<test .o>
#       -DKERNEL_DIR=<plugins/reweightArgmax> -DEMULATION_DIR=<plugins/tests/cudaEmulation>
#       -DWORK_DIR=<scratch dir> [-DSANITIZERS=ON] [-DMUTANT=<name>] -P this file
# With MUTANT, only that mutant (ctest runs each as its own test, side by side); a name that is not
# below is an error, so that a renamed mutant cannot leave a test that checks nothing.
foreach(required CXX FLAGS TEST_OBJECT KERNEL_DIR EMULATION_DIR WORK_DIR)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "emulatedKernelMutants.cmake: -D${required}=... is required")
  endif()
endforeach()
string(REPLACE "|" ";" FLAGS "${FLAGS}")
set(CUH reweightArgmaxKernel.cuh)
set(CU reweightArgmaxKernel.cu)
set(EMULATION cudaEmulation/cuda_runtime.h)

# mutant(NAME FILE ORIGINAL REPLACEMENT EXPECTED): FILE is ${CUH}, ${CU} or a file of the emulation
# (cudaEmulation/...); EXPECTED is a regex the failing test's output must match
function(mutant name file original replacement expected)
  if(DEFINED MUTANT AND NOT name STREQUAL MUTANT)
    return()
  endif()
  set_property(GLOBAL PROPERTY DANNET_MUTANT_RAN TRUE)
  set(dir ${WORK_DIR}/${name})
  file(REMOVE_RECURSE ${dir})
  file(MAKE_DIRECTORY ${dir})
  file(COPY ${KERNEL_DIR}/${CUH} ${KERNEL_DIR}/${CU} ${EMULATION_DIR} DESTINATION ${dir})
  file(READ ${dir}/${file} source)
  string(REPLACE "${original}" "" without "${source}")
  string(LENGTH "${source}" before)
  string(LENGTH "${without}" after)
  string(LENGTH "${original}" length)
  math(EXPR occurrences "(${before} - ${after}) / ${length}")
  if(NOT occurrences EQUAL 1)
    message(SEND_ERROR "mutant '${name}': the text to mutate occurs ${occurrences} times in ${file} "
      "(expected once); update this script to the kernel source:\n${original}")
    return()
  endif()
  string(REPLACE "${original}" "${replacement}" source "${source}")
  file(WRITE ${dir}/${file} "${source}")

  execute_process(COMMAND ${CXX} ${FLAGS} -I${dir}/cudaEmulation -xc++ -c ${dir}/${CU} -o ${dir}/kernel.o
    RESULT_VARIABLE compiled ERROR_VARIABLE log)
  if(NOT compiled EQUAL 0)
    message(SEND_ERROR "mutant '${name}' does not compile (fix the mutation, not the kernel):\n${log}")
    return()
  endif()
  execute_process(COMMAND ${CXX} ${FLAGS} ${TEST_OBJECT} ${dir}/kernel.o -pthread -o ${dir}/test
    RESULT_VARIABLE linked ERROR_VARIABLE log)
  if(NOT linked EQUAL 0)
    message(SEND_ERROR "mutant '${name}' does not link:\n${log}")
    return()
  endif()
  execute_process(COMMAND ${dir}/test --stop-at-first-failure RESULT_VARIABLE result OUTPUT_VARIABLE out
    ERROR_VARIABLE out TIMEOUT 60)
  string(REGEX MATCH "[^\n]*(${expected})[^\n]*" evidence "${out}")
  if(result EQUAL 0 OR evidence STREQUAL "")
    message(SEND_ERROR "mutant '${name}' SURVIVED: the test passed (exit ${result}) or failed without "
      "matching '${expected}':\n${out}")
  else()
    message(STATUS "mutant '${name}' killed: ${evidence}")
  endif()
endfunction()

# Checkers that only the sanitized build has (else any failure counts).
if(SANITIZERS)
  set(ASAN "heap-buffer-overflow")
  set(UBSAN "misaligned address")
else()
  set(ASAN "FAILED|Segmentation|Abort")
  set(UBSAN "FAILED|Segmentation|Abort")
endif()

# --- kernel mutants -----------------------------------------------------------------------------
mutant(tileOneColumnShort ${CUH}
  "int const tileW = c1 - c0 + 1;"
  "int const tileW = c1 - c0;"
  "FAILED")
mutant(lerpNeighbourPastTheEdge ${CUH}
  "r.i1 = r.i0 + (r.i0 < inSize - 1 ? 1 : 0);"
  "r.i1 = r.i0 + 1;"
  "FAILED|not inside any cudaMalloc allocation")
mutant(sourceIndexRoundedToNearest ${CUH}
  "r.i0 = static_cast<int>(src);"
  "r.i0 = static_cast<int>(src + 0.5f);"
  "FAILED|not inside any cudaMalloc allocation")
mutant(noBarrierAfterStaging ${CUH}
  "        __syncthreads();\n"
  ""
  "FAILED")
# threads past the output's edge leave before the barrier the others wait at (undefined on a GPU)
mutant(returnBeforeBarrier ${CUH}
  "    if (staged)\n    {\n        int const threads"
  "    if (y >= p.outHeight || x >= p.outWidth)\n    {\n        return;\n    }\n    if (staged)\n    {\n        int const threads"
  "non-uniform __syncthreads")
mutant(fusedMultiplyAdd ${CUH}
  "float const top = addRn(mulRn(lx.l0, v00), mulRn(lx.l1, v01));"
  "float const top = __fmaf_rn(lx.l0, v00, mulRn(lx.l1, v01));"
  "FAILED")
mutant(tiesToTheHigherClass ${CUH}
  "if (s > best[k]) // strict"
  "if (s >= best[k]) // strict"
  "FAILED")
mutant(pack4ByteOrder ${CUH}
  "word |= static_cast<unsigned int>(value[k]) << (8 * k);"
  "word |= static_cast<unsigned int>(value[k]) << (8 * (3 - k));"
  "FAILED")
mutant(unstagedLoadPastTheChannel ${CUH}
  ": toFloat(__ldg(src + c * plane + offset[k][j]));"
  ": toFloat(__ldg(src + (c + 1) * plane + offset[k][j]));"
  "not inside any cudaMalloc allocation")
mutant(uint8StorePastTheRow ${CUH}
  "            for (int k = 0; k < count; ++k)
            {
                pixels[k] = static_cast<unsigned char>(value[k]);"
  "            for (int k = 0; k < kPixelsPerThread; ++k)
            {
                pixels[k] = static_cast<unsigned char>(value[k]);"
  "${ASAN}")
mutant(int4StoreOnRaggedRows ${CUH}
  "if (count == 4 && (outWidth & 3) == 0)
        {
            *reinterpret_cast<int4*>(pixels)"
  "if (count == 4)
        {
            *reinterpret_cast<int4*>(pixels)"
  "${UBSAN}")
mutant(launcherSwapsTypes ${CU}
  "kKernels[fp16 ? 1 : 0][format]"
  "kKernels[fp16 ? 0 : 1][format]"
  "FAILED|not inside any cudaMalloc allocation")
# confidence: the running sum not rescaled when the maximum moves, the level truncated instead of
# rounded (every level at most one off: the test's limit on how many may be off catches it), the
# confidence kernels' launcher reading fp16 as fp32
mutant(confidenceNotRescaled ${CUH}
  "return moves ? addRn(mulRn(sum, e), 1.0f) : addRn(sum, e);"
  "return moves ? addRn(sum, 1.0f) : addRn(sum, e);"
  "FAILED.*confidence")
mutant(confidenceLevelTruncated ${CUH}
  "float const level = addRn(mulRn(divRn(1.0f, sum), 255.0f), 0.5f);"
  "float const level = mulRn(divRn(1.0f, sum), 255.0f);"
  "FAILED.*confidence levels are one level off")
mutant(launcherSwapsConfidenceTypes ${CU}
  "kConfidenceKernels[fp16 ? 1 : 0][format]"
  "kConfidenceKernels[fp16 ? 0 : 1][format]"
  "FAILED|not inside any cudaMalloc allocation")
# the launcher's work not on the stream it is given (TensorRT's enqueue stream): on the default
# stream, which orders it with all other work of the device (and breaks CUDA graph capture), or
# waiting for the device, where enqueue must return at once; a GPU computes the same labels
# either way, so only the emulation's record of the launches catches them
mutant(launchesOnTheDefaultStream ${CU}
  "cudaLaunchKernel(kKernels[fp16 ? 1 : 0][format], grid, block, args, 0, stream)"
  "cudaLaunchKernel(kKernels[fp16 ? 1 : 0][format], grid, block, args, 0, nullptr)"
  "FAILED.*not one launch on the stream it was given")
mutant(synchronisesTheDevice ${CU}
  "    void* args[] = {&logits, &labels, &confidence, paramsArg};"
  "    cudaDeviceSynchronize();\n    void* args[] = {&logits, &labels, &confidence, paramsArg};"
  "FAILED.*synchronised")

# --- emulator self-tests --------------------------------------------------------------------------
# the emulation's fp16 conversion, wrong for subnormals: the kernel runs as written, on wrong values
mutant(emulatorHalfSubnormalScale ${EMULATION}
  "static_cast<float>(mantissa) * 0x1p-24f;"
  "static_cast<float>(mantissa) * 0x1p-25f;"
  "FAILED")

get_property(ran GLOBAL PROPERTY DANNET_MUTANT_RAN)
if(DEFINED MUTANT AND NOT ran)
  message(FATAL_ERROR "emulatedKernelMutants.cmake: no mutant named '${MUTANT}'")
endif()
