// Starts the vendored Swagger UI on this server's own OpenAPI document (no inline script: the page's
// Content-Security-Policy allows scripts from this origin only).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No call to the public validator service: everything stays on this server.
    validatorUrl: null,
  });
});
