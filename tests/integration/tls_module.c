/* A shared object with dynamic TLS, loaded many times by tls_dlopen.c. */
__thread char tls_buf[4096];
__thread int tls_count;

int tls_touch(void)
{
	tls_buf[tls_count % (int)sizeof(tls_buf)] ^= 1;
	return ++tls_count;
}
