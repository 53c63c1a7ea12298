/* A stand-in for libupcache.so in tests of `upcache run`: loads, does nothing. */
int upcache_test_empty_preload_marker = 1;
