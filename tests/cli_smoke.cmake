# Smoke test of the wideattn CLI: cmake -DCLI=<path to wideattn> -P cli_smoke.cmake
# Runs `info`, a small prefill and a small decode call on the CPU (checked against the f64
# oracle by the CLI itself), and a usage mistake, and fails on an unexpected exit code or
# missing output words.
if(NOT CLI)
  message(FATAL_ERROR "cli_smoke: pass -DCLI=<path of the wideattn executable>")
endif()

# run_cli(<name> <expected exit code> <words expected in stdout+stderr> -- <arguments>)
function(run_cli name expected_code words)
  set(arguments ${ARGN})
  list(REMOVE_AT arguments 0)  # the "--" separator
  execute_process(COMMAND ${CLI} ${arguments}
                  RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  set(all "${out}${err}")
  if(NOT "${code}" STREQUAL "${expected_code}")
    message(FATAL_ERROR "cli_smoke ${name}: `wideattn ${arguments}` exited with ${code}, "
                        "expected ${expected_code}\n--- stdout\n${out}\n--- stderr\n${err}")
  endif()
  foreach(word IN LISTS words)
    string(FIND "${all}" "${word}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "cli_smoke ${name}: output of `wideattn ${arguments}` lacks \"${word}\"\n"
                          "--- stdout\n${out}\n--- stderr\n${err}")
    endif()
  endforeach()
  message(STATUS "cli_smoke ${name}: ok")
endfunction()

run_cli(info 0 "backends;cpu: available;kernels;plan for" -- info)
run_cli(prefill 0 "kernel   prefill_unfused;reason;accuracy;ok: worst relative error" --
        run --backend cpu --prefix 256 --suffix 16 --repeat 1 --warmup 0 --lse)
run_cli(decode 0 "kernel;accuracy;ok: worst relative error" --
        run --backend cpu --prefix 300 --suffix 1 --head-dim 128 --dtype f32 --repeat 1 --warmup 0)
run_cli(fp8_cache 0 "fp8 KV;kernel;ok: worst relative error" --
        run --backend cpu --prefix 200 --suffix 12 --page-size 16 --kv-fp8 --repeat 1 --warmup 0)
run_cli(planned_bench 0 "(planned);host per call" --
        bench --backend cpu --suite cpu --filter "no such problem|E4B decode" --call planned --repeat 1
        --warmup 0 --no-ceilings --check-rows 1)
run_cli(filter_matches_nothing 2 "error;--filter 'no such|problem either' matches no problem" --
        bench --backend cpu --suite cpu --filter "no such|problem either" --no-ceilings)
# TEXT$ anchors at the end: "E4B decode" alone would match E4B's decode problems.
run_cli(filter_anchored_at_end 2 "error;--filter 'E4B decode$' matches no problem" --
        bench --backend cpu --suite cpu --filter "E4B decode$" --no-ceilings)
run_cli(usage_error 2 "error;--q-heads 6" --
        run --backend cpu --q-heads 6 --kv-heads 4 --prefix 8 --suffix 1)
