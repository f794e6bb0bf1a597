"""A listen's life: the grant that mints and audits it (in-process or through a
remote API, for API callers and signed-in people), the session it opens, and the
revocation that ends it when the right to listen goes away.
"""
