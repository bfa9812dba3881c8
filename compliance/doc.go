// Package compliance runs the checks a hosting provider must run on the
// sites it has filed (备案专项核查): the footer check (the home page shows
// the registry's filing number and links to beian.miit.gov.cn) and the
// access check (the domain resolves only to the provider's networks).
//
// It is a leaf beside proxy and admin: it reads registry records and
// dials only the upstreams and resolver it is given.
//
//	rec := snap.Lookup("example.cn")
//	f := compliance.CheckFooter(ctx, "example.cn", rec, compliance.FooterOptions{
//		HTTPUpstream: "10.0.0.10:80", TLSUpstream: "10.0.0.10:443",
//	})
//	a := compliance.CheckAccess(ctx, "example.cn", compliance.AccessOptions{
//		Resolver: "10.0.0.53:53", ProviderNetworks: nets,
//	})
//	fmt.Println(f.Status, f.Found, f.Link, a.Status, a.Addresses)
package compliance
