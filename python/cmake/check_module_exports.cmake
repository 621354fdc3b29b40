# Build check for the Python extension (run after linking, see python/CMakeLists.txt).
# Fails when the module's dynamic symbol table exports anything but PyInit__wideattn, or when it
# contains the C++ runtime (libstdc++) without linking libstdc++.so.6: a module that exports a
# static copy of the runtime crashes on its first std::ostringstream inside a process that has
# already loaded libstdc++.so.6 (issue 11: a source build with a compiler that links libstdc++
# statically segfaulted in plan_attention).
# Arguments: -DMODULE=<path> -DNM=<nm> -DREADELF=<readelf>
if(NOT NM OR NOT EXISTS "${NM}")
  message(WARNING "wideattn: no nm found; the extension's exported symbols were not checked")
  return()
endif()
execute_process(COMMAND "${NM}" -D --defined-only "${MODULE}" OUTPUT_VARIABLE defined
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "wideattn: '${NM} -D ${MODULE}' failed: ${err}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${defined}")
set(unexpected "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^[0-9a-fA-F]* *[A-Za-z] +" "" symbol "${line}")
  # Symbol-version definitions (e.g. from a version script) are absolute symbols: skip them.
  if(symbol STREQUAL "PyInit__wideattn" OR line MATCHES " A ")
    continue()
  endif()
  list(APPEND unexpected "${symbol}")
endforeach()
list(LENGTH unexpected count)
if(count GREATER 0)
  list(SUBLIST unexpected 0 5 first)
  message(FATAL_ERROR "wideattn: the Python extension ${MODULE} exports ${count} symbols besides "
          "PyInit__wideattn (first: ${first}). Exported copies of statically linked libraries "
          "(libstdc++ above all) are bound to the process's own copies at load time and crash; "
          "the version script python/cmake/module_exports.map must be applied at link time.")
endif()
message(STATUS "wideattn: the Python extension exports PyInit__wideattn only")
