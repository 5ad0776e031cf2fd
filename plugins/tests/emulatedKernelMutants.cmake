# The emulated kernel test has teeth: each mutant below is a copy of the kernel sources with one
# deliberate bug; compiled against the CPU emulation and linked with the test's own object, it must
# make the test fail (with the given message where a particular checker must catch it).
# Each mutation's original text must occur exactly once in its file, so that this script breaks
# loudly, instead of testing nothing, when the kernel source changes under it.
#
# cmake -DCXX=<c++ compiler> -DFLAGS=<compile and link flags, |-separated> -DTEST_OBJECT=<test .o>
#       -DKERNEL_DIR=<plugins/reweightArgmax> -DWORK_DIR=<scratch dir> [-DSANITIZERS=ON] -P this file
foreach(required CXX FLAGS TEST_OBJECT KERNEL_DIR WORK_DIR)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "emulatedKernelMutants.cmake: -D${required}=... is required")
  endif()
endforeach()
string(REPLACE "|" ";" FLAGS "${FLAGS}")
set(CUH reweightArgmaxKernel.cuh)
set(CU reweightArgmaxKernel.cu)

# mutant(NAME FILE ORIGINAL REPLACEMENT EXPECTED): EXPECTED is a regex the failing test's output must match
function(mutant name file original replacement expected)
  set(dir ${WORK_DIR}/${name})
  file(REMOVE_RECURSE ${dir})
  file(MAKE_DIRECTORY ${dir})
  file(COPY ${KERNEL_DIR}/${CUH} ${KERNEL_DIR}/${CU} DESTINATION ${dir})
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

  execute_process(COMMAND ${CXX} ${FLAGS} -xc++ -c ${dir}/${CU} -o ${dir}/kernel.o
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
mutant(fusedMultiplyAdd ${CUH}
  "float const top = addRn(mulRn(lx.l0, v00), mulRn(lx.l1, v01));"
  "float const top = __fmaf_rn(lx.l0, v00, mulRn(lx.l1, v01));"
  "FAILED")
mutant(tiesToTheHigherClass ${CUH}
  "if (s > best[k]) // strict"
  "if (s >= best[k]) // strict"
  "FAILED")
mutant(halfSubnormalScale ${CUH}
  "static_cast<float>(mantissa) * 0x1p-24f;"
  "static_cast<float>(mantissa) * 0x1p-25f;"
  "FAILED")
mutant(pack4ByteOrder ${CUH}
  "word |= static_cast<unsigned int>(label[k]) << (8 * k);"
  "word |= static_cast<unsigned int>(label[k]) << (8 * (3 - k));"
  "FAILED")
mutant(unstagedLoadPastTheChannel ${CUH}
  ": toFloat(__ldg(src + c * plane + offset[k][j]));"
  ": toFloat(__ldg(src + (c + 1) * plane + offset[k][j]));"
  "not inside any cudaMalloc allocation")
mutant(uint8StorePastTheRow ${CUH}
  "            for (int k = 0; k < count; ++k)
            {
                out[k] = static_cast<unsigned char>(label[k]);"
  "            for (int k = 0; k < kPixelsPerThread; ++k)
            {
                out[k] = static_cast<unsigned char>(label[k]);"
  "${ASAN}")
mutant(int4StoreOnRaggedRows ${CUH}
  "if (count == 4 && (p.outWidth & 3) == 0)
        {
            *reinterpret_cast<int4*>(out)"
  "if (count == 4)
        {
            *reinterpret_cast<int4*>(out)"
  "${UBSAN}")
mutant(launcherSwapsTypes ${CU}
  "kKernels[fp16 ? 1 : 0][format]"
  "kKernels[fp16 ? 0 : 1][format]"
  "FAILED|not inside any cudaMalloc allocation")
