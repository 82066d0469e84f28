# The allocator of the long-running processes: bursard, the echo server it
# is measured against (the same stack), and the restart/memory benchmark
# that stands in for bursard (decision 024). jemalloc unless a sanitizer
# build brings its own allocator.
set(BURSAR_ALLOCATOR "jemalloc" CACHE STRING "jemalloc or system (glibc)")
if(NOT BURSAR_SANITIZE STREQUAL "")
  set(BURSAR_ALLOCATOR "system")
endif()
if(BURSAR_ALLOCATOR STREQUAL "jemalloc")
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(JEMALLOC REQUIRED IMPORTED_TARGET jemalloc)
elseif(NOT BURSAR_ALLOCATOR STREQUAL "system")
  message(FATAL_ERROR
    "BURSAR_ALLOCATOR is \"${BURSAR_ALLOCATOR}\": use jemalloc or system")
endif()

function(bursar_use_allocator target)
  if(BURSAR_ALLOCATOR STREQUAL "jemalloc")
    target_link_libraries(${target} PRIVATE PkgConfig::JEMALLOC)
  endif()
endfunction()
