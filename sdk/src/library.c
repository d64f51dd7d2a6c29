/*
 * Process-wide set-up of the libraries that libvaquero uses.
 */

#include <curl/curl.h>

#include <vaquero/vaquero.h>

int
vq_library_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? VQ_OK
                                                             : VQ_ERROR;
}

void
vq_library_cleanup(void)
{
    curl_global_cleanup();
}
