# lcmt_runtime: the on-device runtime (export/runtime/lcmt.h), a static and
# a shared library built from an explicit source list. It links nothing but
# libc, libm, pthreads, cJSON and (for the SHA-256 pins; -DLCMT_SHA256=OFF
# drops it) libcrypto: no HDF5 (LC_NO_HDF5: .h5 files are refused
# with a message), no LAPACK (LC_NO_LAPACK: SVD merges are unsupported), no
# OpenBLAS (the portable lc_sgemm), no zlib (lc_crc32), OpenMP only with
# -DLCMT_OPENMP=ON. Its include path holds only its own folders, and the
# shared library links with --no-undefined, so a stray dependency fails
# the build.
option(LCMT_OPENMP "OpenMP in the runtime's kernels (off for the device build)" OFF)
option(LCMT_SHA256 "SHA-256 pins of bundles and bases through libcrypto (export/BUNDLE.md, Integrity)" ON)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LCMT_CJSON REQUIRED IMPORTED_TARGET libcjson)
if(LCMT_SHA256)
  pkg_check_modules(LCMT_CRYPTO REQUIRED IMPORTED_TARGET libcrypto)
endif()
find_package(Threads REQUIRED)

file(GLOB LCMT_RUNTIME_KERNELS CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/kernels/base/*.c ${CMAKE_SOURCE_DIR}/kernels/*.c)
# The data-loaders a base and a bundle need (GGUF bases included).
set(LCMT_RUNTIME_LOADERS
    model_io.c model_map.c adapter_io.c hf_config.c llama2c.c tensor_file.c tensor_file_st.c tensor_file_h5.c tensor_writer.c fsutil.c
    tokenizer.c tokenizer_text.c tokenizer_encode.c tokenizer_decode.c tokenizer_parts.c unicode_tables.c
    template.c bundle.c recipe.c config.c generation.c gguf.c gguf_model.c
    chat_template.c chat_template_parse.c chat_template_value.c prompt.c integrity.c)
list(TRANSFORM LCMT_RUNTIME_LOADERS PREPEND ${CMAKE_SOURCE_DIR}/data-loaders/)

add_library(lcmt_runtime_obj OBJECT ${LCMT_RUNTIME_KERNELS} ${LCMT_RUNTIME_LOADERS}
            ${CMAKE_SOURCE_DIR}/export/runtime/lcmt.c)
set_target_properties(lcmt_runtime_obj PROPERTIES POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
target_compile_definitions(lcmt_runtime_obj PRIVATE LC_NO_HDF5 LC_NO_LAPACK LCMT_BUILD)
target_include_directories(lcmt_runtime_obj PUBLIC
  ${CMAKE_SOURCE_DIR}/kernels/base ${CMAKE_SOURCE_DIR}/kernels ${CMAKE_SOURCE_DIR}/data-loaders
  ${CMAKE_SOURCE_DIR}/export/runtime)
target_link_libraries(lcmt_runtime_obj PUBLIC PkgConfig::LCMT_CJSON)
set(lcmt_runtime_libs PkgConfig::LCMT_CJSON Threads::Threads m)
if(LCMT_SHA256)
  target_compile_definitions(lcmt_runtime_obj PRIVATE LC_HAVE_SHA256)
  target_link_libraries(lcmt_runtime_obj PUBLIC PkgConfig::LCMT_CRYPTO)
  list(APPEND lcmt_runtime_libs PkgConfig::LCMT_CRYPTO)
endif()
if(LCMT_OPENMP)
  find_package(OpenMP REQUIRED)
  target_link_libraries(lcmt_runtime_obj PUBLIC OpenMP::OpenMP_C)
  list(APPEND lcmt_runtime_libs OpenMP::OpenMP_C)
else()
  target_compile_options(lcmt_runtime_obj PRIVATE -fopenmp-simd)
endif()

add_library(lcmt_runtime STATIC $<TARGET_OBJECTS:lcmt_runtime_obj>)
add_library(lcmt_runtime_shared SHARED $<TARGET_OBJECTS:lcmt_runtime_obj>)
set_target_properties(lcmt_runtime_shared PROPERTIES OUTPUT_NAME lcmt_runtime
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
foreach(t lcmt_runtime lcmt_runtime_shared)
  target_include_directories(${t} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/export/runtime> $<INSTALL_INTERFACE:include>)
  target_link_libraries(${t} PUBLIC ${lcmt_runtime_libs})
endforeach()
target_link_options(lcmt_runtime_shared PRIVATE -Wl,--no-undefined -Wl,--as-needed)

# The programs over the API: the example app and the check program of the
# aarch64 comparison (scripts/build_aarch64.sh).
add_executable(lcmt_example ${CMAKE_SOURCE_DIR}/export/runtime/example.c)
target_link_libraries(lcmt_example lcmt_runtime)
add_executable(lcmt_check ${CMAKE_SOURCE_DIR}/export/runtime/lcmt_check.c)
target_link_libraries(lcmt_check lcmt_runtime)
# measurements (scripts/bench_runtime.sh); it also writes its test inputs,
# so it uses the runtime's internal headers
add_executable(lcmt_bench ${CMAKE_SOURCE_DIR}/export/runtime/lcmt_bench.c)
target_link_libraries(lcmt_bench lcmt_runtime)
target_include_directories(lcmt_bench PRIVATE ${CMAKE_SOURCE_DIR}/kernels/base ${CMAKE_SOURCE_DIR}/kernels
                           ${CMAKE_SOURCE_DIR}/data-loaders)

install(TARGETS lcmt_runtime lcmt_runtime_shared
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_SOURCE_DIR}/export/runtime/lcmt.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# relocatable: the prefix is found from the .pc file's own place
file(RELATIVE_PATH LCMT_PC_UP /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
if(LCMT_SHA256)
  set(LCMT_PC_CRYPTO " libcrypto")
endif()
configure_file(${CMAKE_SOURCE_DIR}/export/runtime/lcmt_runtime.pc.in ${CMAKE_BINARY_DIR}/lcmt_runtime.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/lcmt_runtime.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
