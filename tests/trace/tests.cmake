# Tests of brisk-trace, included from tools/CMakeLists.txt (which defines
# the tool's targets).
find_package(Python3 COMPONENTS Interpreter)

# The engine, directly: parser, checked replay, checks against a broken
# allocator; also under ASan+UBSan against brisk_core_asan.
add_executable(test_trace_engine ${PROJECT_SOURCE_DIR}/tests/trace/test_trace_engine.c)
target_include_directories(test_trace_engine PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
target_link_libraries(test_trace_engine PRIVATE brisk_trace_engine)
target_compile_options(test_trace_engine PRIVATE ${BRISK_TEST_WARNINGS})
add_test(NAME test_trace_engine COMMAND test_trace_engine)

if(BRISK_SANITIZE)
  brisk_trace_engine(brisk_trace_engine_asan brisk_core_asan)
  add_executable(test_trace_engine_asan ${PROJECT_SOURCE_DIR}/tests/trace/test_trace_engine.c)
  target_include_directories(test_trace_engine_asan PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
  target_link_libraries(test_trace_engine_asan PRIVATE brisk_trace_engine_asan)
  target_compile_options(test_trace_engine_asan PRIVATE ${BRISK_TEST_WARNINGS})
  add_test(NAME test_trace_engine_asan COMMAND test_trace_engine_asan)
  # The whole tool under sanitizers, for the malformed-input test: bad
  # input must never crash it.
  add_executable(brisk-trace-asan trace/main.c trace/record.c)
  target_link_libraries(brisk-trace-asan PRIVATE brisk_trace_engine_asan)
  target_compile_options(brisk-trace-asan PRIVATE ${BRISK_WARNINGS})
  set(TRACE_ASAN_ENV "ASAN_OPTIONS=abort_on_error=0:detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  set_tests_properties(test_trace_engine_asan PROPERTIES ENVIRONMENT "${TRACE_ASAN_ENV}")
endif()

# A program that allocates in a known pattern, in threads and in a forked
# child, for the recorder test.
add_executable(trace_test_program ${PROJECT_SOURCE_DIR}/tests/trace/trace_test_program.c)
# -fno-builtin: the compiler must not elide the allocations it can see are
# unused (clang does), they are the point.
target_compile_options(trace_test_program PRIVATE ${BRISK_TEST_WARNINGS} -fno-builtin)
target_link_libraries(trace_test_program PRIVATE Threads::Threads)

# Programs whose allocation sites, peak and leaks are known by
# construction, for test_trace_report.py: C with a shared library and
# threads, and C++. Frames must survive: no inlining of the sites, no
# tail calls.
set(TRACE_SITES_FLAGS -g -O1 -fno-builtin -fno-optimize-sibling-calls -fno-inline)
add_library(trace_sites_lib SHARED ${PROJECT_SOURCE_DIR}/tests/trace/trace_sites_lib.c)
target_compile_options(trace_sites_lib PRIVATE ${BRISK_TEST_WARNINGS} ${TRACE_SITES_FLAGS})
add_executable(trace_sites_program ${PROJECT_SOURCE_DIR}/tests/trace/trace_sites_program.c)
target_compile_options(trace_sites_program PRIVATE ${BRISK_TEST_WARNINGS} ${TRACE_SITES_FLAGS})
target_link_libraries(trace_sites_program PRIVATE trace_sites_lib Threads::Threads ${CMAKE_DL_LIBS})
find_program(BRISK_TRACE_CXX NAMES g++ c++ clang++)
set(TRACE_SITES_CXX "")
if(BRISK_TRACE_CXX)
  set(TRACE_SITES_CXX ${CMAKE_CURRENT_BINARY_DIR}/trace_sites_cxx)
  add_custom_command(OUTPUT ${TRACE_SITES_CXX}
    COMMAND ${BRISK_TRACE_CXX} -std=c++17 -g -O1 -fno-optimize-sibling-calls -fno-inline
            ${PROJECT_SOURCE_DIR}/tests/trace/trace_sites_cxx.cc -o ${TRACE_SITES_CXX}
    DEPENDS ${PROJECT_SOURCE_DIR}/tests/trace/trace_sites_cxx.cc
    COMMENT "Building the C++ program of test_trace_report with ${BRISK_TRACE_CXX}")
  add_custom_target(trace_sites_cxx_program ALL DEPENDS ${TRACE_SITES_CXX})
else()
  message(WARNING "no C++ compiler: test_trace_report skips its C++ program, visibly")
endif()

# Sampled heap profiling (BRISK_OPTIONS=profile): a program of known
# allocation mix, linked with libbrisk.so, whose profile `report` must
# match (per-site shares), dumped by brisk_profile_dump, by SIGUSR2 and
# at exit; the options' errors; no file when profiling is off.
add_executable(profile_mix ${PROJECT_SOURCE_DIR}/tests/trace/profile_mix.c)
target_compile_options(profile_mix PRIVATE ${BRISK_TEST_WARNINGS} ${TRACE_SITES_FLAGS})
target_link_libraries(profile_mix PRIVATE brisk_shared Threads::Threads)

if(Python3_FOUND)
  set(TRACE_TESTS ${PROJECT_SOURCE_DIR}/tests/trace)
  add_test(NAME test_profile
    COMMAND ${Python3_EXECUTABLE} ${TRACE_TESTS}/test_profile.py $<TARGET_FILE:brisk-trace>
            $<TARGET_FILE:profile_mix>)
  set_tests_properties(test_profile PROPERTIES TIMEOUT 120)
  add_test(NAME test_trace_errors
    COMMAND ${Python3_EXECUTABLE} ${TRACE_TESTS}/test_trace_errors.py $<TARGET_FILE:brisk-trace>)
  if(BRISK_SANITIZE)
    add_test(NAME test_trace_errors_asan
      COMMAND ${Python3_EXECUTABLE} ${TRACE_TESTS}/test_trace_errors.py $<TARGET_FILE:brisk-trace-asan>)
    set_tests_properties(test_trace_errors_asan PROPERTIES ENVIRONMENT "${TRACE_ASAN_ENV}")
  endif()
  add_test(NAME test_trace_record
    COMMAND ${Python3_EXECUTABLE} ${TRACE_TESTS}/test_trace_record.py $<TARGET_FILE:brisk-trace>
            $<TARGET_FILE:trace_test_program>)
  add_test(NAME test_trace_report
    COMMAND ${Python3_EXECUTABLE} ${TRACE_TESTS}/test_trace_report.py $<TARGET_FILE:brisk-trace>
            $<TARGET_FILE:trace_sites_program> $<TARGET_FILE:trace_sites_lib> "${TRACE_SITES_CXX}")
  set_tests_properties(test_trace_report PROPERTIES TIMEOUT 300)
  add_test(NAME test_trace_svg
    COMMAND ${Python3_EXECUTABLE} ${TRACE_TESTS}/test_trace_svg.py $<TARGET_FILE:brisk-trace>
            ${PROJECT_SOURCE_DIR}/bench/traces/gen_synthetic.py)
  # The heap map page in a real browser (headless Chromium over the
  # DevTools protocol). Skipped, visibly, where Chromium is missing.
  # Under BRISK_SANITIZE the sanitizer build writes the recordings' pages
  # too, and must write the same sites.
  set(TRACE_HTML_ASAN "")
  if(BRISK_SANITIZE)
    set(TRACE_HTML_ASAN --asan-tool $<TARGET_FILE:brisk-trace-asan>)
  endif()
  add_test(NAME test_trace_html
    COMMAND ${Python3_EXECUTABLE} ${TRACE_TESTS}/test_trace_html.py $<TARGET_FILE:brisk-trace>
            ${PROJECT_SOURCE_DIR}/bench/traces/gen_synthetic.py
            --program $<TARGET_FILE:trace_sites_program> --lib $<TARGET_FILE:trace_sites_lib>
            --brisk $<TARGET_FILE:brisk_shared> ${TRACE_HTML_ASAN})
  set_tests_properties(test_trace_html PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
else()
  message(WARNING "python3 not found: the brisk-trace command-line tests are not registered")
endif()
