"""Privacy operations on customer data: erasure on request, retention, access audit."""
