/* An empty preload library: the reference for what any LD_PRELOAD costs at process start
 * (bench/run.py builds it twice: alone, and linked to libgcc_s.so.1 as a Rust cdylib is). */
int connectx_bench_empty;
