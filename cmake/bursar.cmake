# bursar_cc_test(NAME SOURCES... DEPS ...): one GoogleTest binary, its tests
# discovered into ctest.
function(bursar_cc_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_options(${name} PRIVATE ${BURSAR_TEST_CODE_OPTIONS})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 30)
endfunction()

# bursar_proto_library(NAME IMPORT_ROOT DIR PROTOS... [GRPC] [IMPORT_DIRS ...]
# [DEPS ...]): C++ code generated from .proto files of the current source dir;
# their import paths are relative to IMPORT_ROOT, and imports may also come
# from IMPORT_DIRS.
function(bursar_proto_library name)
  cmake_parse_arguments(ARG "GRPC" "IMPORT_ROOT" "PROTOS;DEPS;IMPORT_DIRS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${out_dir})
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    file(RELATIVE_PATH rel ${ARG_IMPORT_ROOT} ${CMAKE_CURRENT_SOURCE_DIR}/${proto})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(outs ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.pb.h)
    set(args --cpp_out=${out_dir})
    foreach(dir ${ARG_IMPORT_DIRS})
      list(APPEND args -I${dir})
    endforeach()
    if(ARG_GRPC)
      list(APPEND outs ${out_dir}/${stem}.grpc.pb.cc ${out_dir}/${stem}.grpc.pb.h)
      list(APPEND args --grpc_out=${out_dir}
           --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>)
    endif()
    add_custom_command(
      OUTPUT ${outs}
      COMMAND protobuf::protoc ARGS -I${ARG_IMPORT_ROOT} ${args} ${rel}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${proto} protobuf::protoc
      COMMENT "protoc ${rel}")
    list(APPEND srcs ${outs})
  endforeach()
  add_library(${name} ${srcs})
  target_include_directories(${name} PUBLIC ${out_dir})
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf ${ARG_DEPS})
endfunction()

# bursar_fuzzer(NAME SOURCE DEPS ...): a libFuzzer binary, only in trees whose
# libraries carry the fuzzers' coverage (BURSAR_FUZZERS_IN_TREE,
# cmake/sanitizers.cmake): elsewhere it would fuzz blind.
function(bursar_fuzzer name source)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  if(NOT BURSAR_FUZZERS_IN_TREE)
    return()
  endif()
  add_executable(${name} ${source})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()
