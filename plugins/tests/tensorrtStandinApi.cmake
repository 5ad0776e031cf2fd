# The TensorRT stand-in (tensorrtStandin/) declares TensorRT 10.3's API, the oldest the plugin
# supports, and nothing newer: each snippet below uses an API that came after 10.3 and must fail to
# compile against it, with an error that names that API (a snippet that failed for another reason
# would prove nothing); the control, the 10.3 API the plugin and the host use, must compile. Real
# TensorRT 10.3 headers, where given, must behave the same: that shows the snippets are newer API.
#
# cmake -DCXX=<c++ compiler> -DEMULATION_DIR=<cudaEmulation> -DSTANDIN_DIR=<tensorrtStandin>
#       [-DREAL_10_3_DIRS=<include dir|...>] -DWORK_DIR=<scratch dir> -P this file
foreach(required CXX EMULATION_DIR STANDIN_DIR WORK_DIR)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "tensorrtStandinApi.cmake: -D${required}=... is required")
  endif()
endforeach()
string(REPLACE "|" ";" REAL_10_3_DIRS "${REAL_10_3_DIRS}")
file(MAKE_DIRECTORY ${WORK_DIR})

# compiles(RESULT LOG HEADERS BODY): RESULT is TRUE if main() { BODY; } compiles against HEADERS
function(compiles result log headers body)
  string(SHA1 id "${headers}${body}")
  set(source ${WORK_DIR}/${id}.cpp)
  file(WRITE ${source} "#include \"NvInferRuntime.h\"\nint main()\n{\n    ${body};\n    return 0;\n}\n")
  execute_process(COMMAND ${CXX} -std=c++17 -fsyntax-only -I${headers} -I${EMULATION_DIR} ${source}
    RESULT_VARIABLE status ERROR_VARIABLE errors OUTPUT_VARIABLE errors)
  if(status EQUAL 0)
    set(${result} TRUE PARENT_SCOPE)
  else()
    set(${result} FALSE PARENT_SCOPE)
  endif()
  set(${log} "${errors}" PARENT_SCOPE)
endfunction()

set(CONTROL "static_assert(NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR == 3, \"TensorRT 10.3\");
    nvinfer1::DataType const int4 = nvinfer1::DataType::kINT4;
    nvinfer1::PluginFieldType const fieldInt4 = nvinfer1::PluginFieldType::kINT4;
    (void) int4;
    (void) fieldInt4;
    (void) &nvinfer1::IPluginRegistry::loadLibrary;
    (void) &nvinfer1::ILoggerFinder::findLogger")
# name;body pairs: the API (as compilers name it in the error) and a use of it
set(NEWER
  kFP4 "(void) nvinfer1::DataType::kFP4"
  kE8M0 "(void) nvinfer1::DataType::kE8M0"
  kFP4 "(void) nvinfer1::PluginFieldType::kFP4"
  getAllCreatorsRecursive "(void) &nvinfer1::IPluginRegistry::getAllCreatorsRecursive"
  getInterfaceInfo "(void) &nvinfer1::ILogger::getInterfaceInfo")

set(failures 0)
foreach(headers ${STANDIN_DIR} ${REAL_10_3_DIRS})
  compiles(ok log ${headers} "${CONTROL}")
  if(NOT ok)
    message(SEND_ERROR "${headers}: the TensorRT 10.3 API the plugin uses does not compile:\n${log}")
    math(EXPR failures "${failures} + 1")
  endif()
  set(newer ${NEWER})
  while(newer)
    list(POP_FRONT newer name body)
    compiles(ok log ${headers} "${body}")
    if(ok)
      message(SEND_ERROR "${headers}: '${body}' compiles, but ${name} is not TensorRT 10.3 API")
      math(EXPR failures "${failures} + 1")
    elseif(NOT log MATCHES "${name}")
      message(SEND_ERROR "${headers}: '${body}' fails without naming ${name}: the snippet is broken:\n${log}")
      math(EXPR failures "${failures} + 1")
    else()
      message(STATUS "${headers}: no ${name} ('${body}' is refused)")
    endif()
  endwhile()
endforeach()
if(failures EQUAL 0)
  message(STATUS "the TensorRT stand-in declares TensorRT 10.3's API and nothing newer")
endif()
