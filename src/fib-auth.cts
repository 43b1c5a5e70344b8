#!/usr/bin/env node
/**
 * The `fib-auth` command. It sizes libuv's thread pool, then runs the CLI (cli.ts).
 *
 * jose signs tokens (sign-in, refresh) through WebCrypto, on libuv's thread pool, while the
 * main thread does all the rest. The pool's default of four threads, on a machine with fewer
 * cores than that plus one, makes the pool's threads and the main thread take turns on the
 * cores (BENCHMARKS.md). So the pool gets one thread per core beside the main thread, unless
 * UV_THREADPOOL_SIZE says otherwise. libuv reads the variable once, when the pool starts, and
 * Node's ESM loader starts it while loading modules: this file is CommonJS so that it runs first.
 */
import { availableParallelism } from 'node:os';

process.env.UV_THREADPOOL_SIZE ??= String(Math.max(1, availableParallelism() - 1));
void import('./cli.js');
